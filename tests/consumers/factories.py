"""Dead letters made the way the consumer makes them (through `deadletter_record`), and role users."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

from apps.consumers.models import DeadLetter
from apps.consumers.services import Failure, deadletter_record, parked_failure
from tests.consumers.support import happened, raw_message


def dead_letter(seq: int, *, key: str = "truck-1", scenario: str = "broken", value: bytes | None = None,
                error: Exception | None = None) -> DeadLetter:
    raw = raw_message(happened(key=key, scenario=scenario, seq=seq), offset=seq, value=value)
    failure = Failure.from_exception(error or RuntimeError(f"boom {seq}"), handler="tests.handler")
    return deadletter_record(group="testing", raw=raw, failure=failure, attempts=3)


def parked_dead_letter(seq: int, head: DeadLetter, *, scenario: str = "") -> DeadLetter:
    raw = raw_message(happened(key=head.key or "", scenario=scenario, seq=seq), offset=seq)
    return deadletter_record(group="testing", raw=raw, failure=parked_failure(head.pk), attempts=0, blocked_by_id=head.pk)


def role_user(role: str) -> User:
    """A staff user in the role group the data migrations created."""
    user = User.objects.create_user(role, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user
