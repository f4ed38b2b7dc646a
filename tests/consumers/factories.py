"""Dead letters made the way the consumer makes them (through `deadletter_record`), and role users."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

from apps.consumers.ledger import Failure, deadletter_record
from apps.consumers.models import DeadLetter
from apps.consumers.ordering import parked_failure
from tests.consumers.support import cloud_event_headers, happened, raw_message


def dead_letter(seq: int, *, key: str = "truck-1", scenario: str = "broken", value: bytes | None = None,
                error: Exception | None = None, raw_key: bytes | None = None,
                headers: list[tuple[str, bytes | None]] | None = None) -> DeadLetter:
    """A handler failure of event `seq`; `raw_key` replaces the Kafka key (the event's key in UTF-8), `headers`
    are added to the CloudEvents ones."""
    event = happened(key=key, scenario=scenario, seq=seq)
    raw = raw_message(event, offset=seq, value=value, key=raw_key,
                      headers=cloud_event_headers(event) + headers if headers else None)  # type: ignore[operator]
    failure = Failure.from_exception(error or RuntimeError(f"boom {seq}"), handler="tests.handler")
    return deadletter_record(group="testing", raw=raw, failure=failure, attempts=3)


def dead_letter_of_type(ce_type: str, *, group: str = "invoicing") -> DeadLetter:
    """A handler failure of a message whose CloudEvents type is `ce_type` (its payload a test event's)."""
    event = happened(key="truck:5", seq=1)
    raw = raw_message(event, headers=cloud_event_headers(event, ce_type=ce_type))
    failure = Failure.from_exception(RuntimeError("boom"), handler="tests.handler")
    return deadletter_record(group=group, raw=raw, failure=failure, attempts=3)


def parked_dead_letter(seq: int, head: DeadLetter, *, scenario: str = "") -> DeadLetter:
    raw = raw_message(happened(key=head.key_text() or "-", scenario=scenario, seq=seq), offset=seq, key=head.key_bytes())
    return deadletter_record(group="testing", raw=raw, failure=parked_failure(head.pk), attempts=0, blocked_by_id=head.pk)


def role_user(role: str) -> User:
    """A staff user in the role group the data migrations created."""
    user = User.objects.create_user(role, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user
