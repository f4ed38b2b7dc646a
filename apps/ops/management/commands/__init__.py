"""`manage.py healthcheck`, the workers' container healthcheck."""
