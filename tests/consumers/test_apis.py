"""The dead-letter REST API: filters, detail, replay and discard with the admin's permissions."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.consumers.models import DeadLetter
from tests.consumers.factories import dead_letter, parked_dead_letter, role_user
from tests.consumers.testapp.models import Effect

pytestmark = pytest.mark.django_db(serialized_rollback=True)
URL = "/api/v1/dead-letters/"


def client_for(role: str | None) -> APIClient:
    client = APIClient()
    if role:
        client.force_authenticate(role_user(role))
    return client


def test_list_filters_by_status_group_type_and_fingerprint() -> None:
    first = dead_letter(1, key="truck-1", scenario="", error=RuntimeError("route 1 missing"))
    other = dead_letter(2, key="truck-2", scenario="", error=KeyError("x"))
    DeadLetter.objects.filter(pk=other.pk).update(status=DeadLetter.Status.DISCARDED)
    client = client_for("finance")

    def ids(**params: str) -> list[int]:
        response = client.get(URL, params)
        assert response.status_code == 200
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [other.pk, first.pk]
    assert ids(status="pending") == [first.pk]
    assert ids(group="testing", type="logiflow.testing.Happened.v1") == [other.pk, first.pk]
    assert ids(group="routing") == []
    assert ids(fingerprint=first.fingerprint) == [first.pk]


def test_detail_has_the_decoded_payload_headers_and_traceback() -> None:
    letter = dead_letter(1, scenario="")
    body = client_for("finance").get(f"{URL}{letter.pk}/").json()
    assert body["payload"] == {"key": "truck-1", "scenario": "", "seq": 1}
    assert {"key": "ce_type", "value": "logiflow.testing.Happened.v1", "value_base64": "bG9naWZsb3cudGVzdGluZy5IYXBwZW5lZC52MQ=="} in body["headers"]
    assert "RuntimeError: boom 1" in body["traceback"]


@pytest.mark.parametrize("role", ["dispatcher", "finance"])
def test_dispatcher_and_finance_cannot_replay_or_discard(role: str) -> None:
    letter = dead_letter(1, scenario="")
    client = client_for(role)
    assert client.get(URL).status_code == (403 if role == "dispatcher" else 200)
    assert client.post(f"{URL}{letter.pk}/replay/").status_code == 403
    assert client.post(f"{URL}{letter.pk}/discard/", {"reason": "no"}).status_code == 403
    assert client.post(f"{URL}discard/", {"ids": [letter.pk], "reason": "no"}, format="json").status_code == 403
    assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetter.Status.PENDING


def test_anonymous_and_roleless_users_cannot_read_the_ledger() -> None:
    assert client_for(None).get(URL).status_code in (401, 403)
    roleless = APIClient()
    from django.contrib.auth.models import User

    roleless.force_authenticate(User.objects.create_user("nobody"))
    assert roleless.get(URL).status_code == 403


def test_operations_replays_and_the_parked_messages_follow() -> None:
    head = dead_letter(1, scenario="")
    follower = parked_dead_letter(2, head)
    response = client_for("operations").post(f"{URL}{head.pk}/replay/")
    assert response.status_code == 200
    body = response.json()
    assert (body["outcome"], body["released"], body["dead_letter"]["status"]) == ("applied", [follower.pk], "replayed")
    assert list(Effect.objects.values_list("seq", flat=True)) == [1, 2]


def test_replay_that_fails_again_answers_failed_and_a_refused_one_400() -> None:
    from tests.consumers.testapp.models import Script

    Script.objects.create(scenario="broken", broken=True)
    head = dead_letter(1)
    follower = parked_dead_letter(2, head)
    client = client_for("operations")
    body = client.post(f"{URL}{head.pk}/replay/").json()
    assert (body["outcome"], body["dead_letter"]["attempts"], body["dead_letter"]["status"]) == ("failed", 4, "pending")
    refused = client.post(f"{URL}{follower.pk}/replay/")
    assert refused.status_code == 400 and "parked behind" in refused.json()["detail"]
    assert client.post(f"{URL}999999/replay/").status_code == 404


def test_discard_requires_a_reason() -> None:
    letter = dead_letter(1)
    client = client_for("operations")
    missing = client.post(f"{URL}{letter.pk}/discard/", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()
    assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetter.Status.PENDING
    done = client.post(f"{URL}{letter.pk}/discard/", {"reason": "test data"}, format="json")
    assert done.status_code == 200 and done.json()["dead_letter"]["status"] == "discarded"


def test_a_binary_key_and_header_are_shown_escaped_with_their_exact_bytes_and_the_key_filter_takes_either_form() -> None:
    java = dead_letter(1, raw_key=b"\x00\x00\x00\x07", headers=[("x-note", b"a\x00b\xff")])
    printable = dead_letter(2, key="truck-2")
    client = client_for("finance")

    body = client.get(f"{URL}{java.pk}/").json()

    assert (body["key"], body["key_hex"]) == ("\\x00\\x00\\x00\\x07", "00000007")
    assert {"key": "x-note", "value": "a\\x00b\\xff", "value_base64": "YQBi/w=="} in body["headers"]
    assert [row["id"] for row in client.get(URL, {"key": "truck-2"}).json()["results"]] == [printable.pk]
    assert [row["id"] for row in client.get(URL, {"key": "\\x00\\x00\\x00\\x07"}).json()["results"]] == [java.pk]


def test_a_retrying_dead_letter_is_listed_with_its_next_attempt_and_the_status_filter_knows_retrying() -> None:
    waiting = dead_letter(1)
    DeadLetter.objects.filter(pk=waiting.pk).update(status=DeadLetter.Status.RETRYING, next_attempt_at="2030-01-01T00:00Z")
    dead_letter(2, key="truck-2")
    rows = client_for("finance").get(URL, {"status": "retrying"}).json()["results"]
    assert [(row["id"], row["next_attempt_at"], row["auto_retries"]) for row in rows] == [
        (waiting.pk, "2030-01-01T00:00:00Z", 0)
    ]


def test_replay_and_discard_show_the_dead_letter_only_to_users_who_may_view_it() -> None:
    from django.contrib.auth.models import Permission, User

    actor = User.objects.create_user("replayer")
    actor.user_permissions.add(*Permission.objects.filter(codename__in=["replay_deadletter", "discard_deadletter"]))
    client = APIClient()
    client.force_authenticate(actor)
    letter = dead_letter(1, scenario="broken")
    body = client.post(f"{URL}{letter.pk}/discard/", {"reason": "test data"}, format="json").json()
    assert (body["dead_letter_id"], body["status"], body["dead_letter"]) == (letter.pk, "discarded", None)
    viewer = client_for("operations").post(
        f"{URL}{dead_letter(2, key='truck-2').pk}/discard/", {"reason": "x"}, format="json"
    )
    assert viewer.json()["dead_letter"]["traceback"]


def test_bulk_discard_of_a_head_and_some_of_its_parked_messages_runs_none_of_the_selection() -> None:
    head = dead_letter(1)
    dropped, kept, dropped_too = (parked_dead_letter(seq, head) for seq in (2, 3, 4))
    resolved = dead_letter(5, key="truck-5")
    DeadLetter.objects.filter(pk=resolved.pk).update(status=DeadLetter.Status.REPLAYED)
    client = client_for("operations")
    assert client.post(f"{URL}discard/", {"ids": [head.pk]}, format="json").status_code == 400

    response = client.post(
        f"{URL}discard/", {"ids": [head.pk, dropped.pk, dropped_too.pk, resolved.pk], "reason": "orders cancelled"},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert sorted(body["discarded"]) == [head.pk, dropped.pk, dropped_too.pk]
    assert body["released"] == [kept.pk]
    assert body["refused"] == [{"id": resolved.pk, "error": f"dead letter #{resolved.pk} is already replayed"}]
    assert list(Effect.objects.values_list("seq", flat=True)) == [3]
    assert DeadLetter.objects.get(pk=dropped.pk).history.get().reason == "orders cancelled"
