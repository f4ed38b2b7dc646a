"""The `<id:…>` path converter: an object id is 1 to 19 digits within PostgreSQL's bigint, so an oversized one
matches no URL (404) before anything converts or looks it up. Registered in CommonConfig.ready()."""

from __future__ import annotations

import re

BIGINT_MAX = 2**63 - 1
_ID = re.compile("[0-9]{1,19}")


def parse_id(text: str) -> int | None:
    """`text` as an object id (ASCII digits within bigint), or None: length first, then the conversion."""
    if not _ID.fullmatch(text):
        return None
    number = int(text)
    return number if number <= BIGINT_MAX else None


class IdConverter:
    regex = _ID.pattern

    def to_python(self, value: str) -> int:
        number = parse_id(value)
        if number is None:
            raise ValueError("not an id within bigint")  # Django reads a ValueError as "no match"
        return number

    def to_url(self, value: int) -> str:
        return str(value)
