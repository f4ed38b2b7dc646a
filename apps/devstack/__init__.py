"""Development stack: brokers launched for `make run`, tests, bench and chaos; never installed in production.

It imports nothing else of ours; only tests/, bench/, chaos/ and scripts/ import it (and `make run` runs its command).
"""
