"""The consuming half of the event spine, one story per module: the loop (`runtime`, with `positions` and the
stall `watchdog`), the handler `registry`, `decoding`, the `inbox` (idempotent apply), the dead-letter `ledger`,
per-key `ordering` (locks, parking, releases) and `replay` (replay, edit, discard, automatic retries).

It may import `apps.contracts` and `apps.common`; the business apps register handlers with its registry.
"""
