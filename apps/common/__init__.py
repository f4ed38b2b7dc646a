"""The ground floor, what every app stands on: the worker runtime (`workers`, `progress`), Kafka client settings
(`kafka`), tracing and logs, metric definitions, heartbeats, the health registry, small PostgreSQL helpers
(`postgres`), queueing Celery tasks by name (`queueing`), `model_update`, the DRF plumbing (errors, parsers,
permissions, pagination, schema, token endpoints) and admin mixins.

It imports no other app of ours: apps register with it (`health.register_degradation`), never the reverse.
"""
