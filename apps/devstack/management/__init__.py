"""Management commands of the development stack (`make run` only)."""
