"""Words for people: a count with its noun in the right number ("1 dead letter", "2 dead letters")."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and the noun it counts: `plural` (default: `singular` + "s") for every count but one."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
