"""`make chaos`: the whole stack as real processes, driven through the REST API while a seeded schedule injects
faults, then the invariants that must have survived them, one `name=value` line each (README, "make chaos")."""
