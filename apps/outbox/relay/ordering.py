"""Per-key order inside one relay: which earlier row of its key a sent row must not overtake.

"Key" is (topic, key). A claim says, per row, the previous queued row of its key when that one is not in the
claim (`claims.claim`); this bookkeeping says whether that row is this relay's own, still in flight (wait for its
outcome), already final here (nothing to wait for), or someone else's (hold the row back: sending it could overtake
that one on the topic). A sent row remembers the nearest earlier row of its key whose fate is still open, and is
marked published only if that one ended final. Batches record in claim order, so that outcome is known in time.
"""

from __future__ import annotations

from collections import deque

PUBLISHED = "published"
FAILED = "failed"
PENDING = "pending"  # not confirmed: the row stays pending and is sent again
FINAL = (PUBLISHED, FAILED)  # a successor of such a row may be marked published

HELD = object()  # a row whose key's previous row is someone else's: not sent by this claim


class KeyOrder:
    def __init__(self, *, remembered_batches: int) -> None:
        self.in_flight: set[int] = set()  # sent by this relay, not yet recorded
        self._tails: dict[tuple[str, str], int] = {}  # per key, its last row in flight
        self._outcomes: dict[int, str] = {}  # recorded outcomes of recent batches
        self._recent: deque[list[int]] = deque()
        # A later claim can only name as predecessor a row of a batch still open when it began.
        self._remembered = remembered_batches

    def previous_if_ours(self, previous_id: int) -> int | None | object:
        """The key's previous queued row (not in this claim), as this relay must treat it: its id (in flight
        here: wait for its outcome), None (final here: nothing to wait for) or HELD (anyone else's)."""
        if previous_id in self.in_flight:
            return previous_id
        if self._outcomes.get(previous_id) in FINAL:
            return None
        return HELD

    def open_predecessor(self, key: tuple[str, str], row_id: int, previous_id: int | None) -> int | None:
        """The nearest earlier row of `key` with an open fate: `previous_id`, or a later one in flight here."""
        candidate = self._tails.get(key)
        if candidate is not None and candidate < row_id and (previous_id is None or candidate > previous_id):
            return candidate
        return previous_id

    def sent(self, row_id: int, key: tuple[str, str]) -> None:
        self.in_flight.add(row_id)
        if self._tails.get(key, -1) < row_id:
            self._tails[key] = row_id

    def outcome(self, row_id: int, *, this_batch: dict[int, str]) -> str | None:
        return this_batch.get(row_id, self._outcomes.get(row_id))

    def recorded(self, tails: dict[tuple[str, str], int], outcomes: dict[int, str]) -> None:
        """A batch ended (committed or rolled back) with these outcomes; `tails`: its last row per key."""
        self.in_flight.difference_update(outcomes)
        for key, row_id in tails.items():
            if self._tails.get(key) == row_id:
                del self._tails[key]
        self._outcomes.update(outcomes)
        self._recent.append(list(outcomes))
        while len(self._recent) > self._remembered:
            for row_id in self._recent.popleft():
                self._outcomes.pop(row_id, None)

    def forget_outcomes(self) -> None:
        """Rows recorded as final may be pending again (re-queued after broker amnesia)."""
        self._outcomes.clear()
        self._recent.clear()
