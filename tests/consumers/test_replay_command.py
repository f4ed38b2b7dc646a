"""`manage.py replay_dead_letters`: a group's or a failure group's dead letters replayed from the command line
through the admin's replay service, refused input refused loudly."""

from __future__ import annotations

import io
import os
import pwd

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command

from apps.common.progress import ERASE_LINE, Progress
from apps.consumers.ledger import Failure, deadletter_record
from apps.consumers.models import DeadLetter
from tests.consumers.factories import dead_letter, parked_dead_letter
from tests.consumers.support import happened, raw_message
from tests.consumers.testapp.models import Effect, Script

pytestmark = pytest.mark.django_db


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def operator() -> User:
    """The person the replays are attributed to (`--actor ops`): operations may replay."""
    user = User.objects.create_user("ops", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="replay_deadletter"))
    return user


def replay(*args: str, stderr: io.StringIO | None = None, actor: str | None = "ops") -> str:
    stdout = io.StringIO()
    actor_args = ("--actor", actor) if actor is not None else ()
    call_command("replay_dead_letters", *args, *actor_args, stdout=stdout, stderr=stderr or io.StringIO())
    return stdout.getvalue()


def missing_route(seq: int) -> DeadLetter:
    """One failure group: "route N missing" for any N."""
    return dead_letter(seq, key=f"truck-{seq}", scenario="", error=RuntimeError(f"route {seq} missing"))


def other_group_letter(seq: int) -> DeadLetter:
    raw = raw_message(happened(key=f"audit-{seq}", seq=seq), offset=1000 + seq)
    return deadletter_record(group="testing-audit", raw=raw, attempts=1,
                             failure=Failure.from_exception(RuntimeError(f"route {seq} missing"), handler="tests.handler"))


def test_a_failure_group_is_replayed_through_the_service_and_the_history_names_the_os_user() -> None:
    same = [missing_route(seq) for seq in (1, 2, 3)]
    other = dead_letter(4, key="truck-4", scenario="", error=ValueError("tariff has no rate"))

    out = replay("--failure-group", same[0].fingerprint)

    assert out.startswith(f"replayed 3 dead letters (failure group {same[0].fingerprint}, status pending/retrying): "
                          "3 applied; 0 parked messages released")
    assert set(DeadLetter.objects.filter(pk__in=[d.pk for d in same]).values_list("status", flat=True)) == {"replayed"}
    assert DeadLetter.objects.get(pk=other.pk).status == "pending"
    assert Effect.objects.count() == 3
    entry = DeadLetter.objects.get(pk=same[0].pk).history.get()
    assert entry.actor.username == "ops" and entry.actor_name.startswith("manage.py replay_dead_letters (")


def test_the_history_names_the_actor_given_and_the_os_account_never_the_user_variable(
    monkeypatch: pytest.MonkeyPatch, operator: User
) -> None:
    letter = missing_route(1)
    for variable in ("USER", "LOGNAME", "USERNAME", "LNAME"):
        monkeypatch.setenv(variable, "mallory")

    replay("--failure-group", letter.fingerprint)

    entry = DeadLetter.objects.get(pk=letter.pk).history.get()
    assert entry.actor == operator
    assert "mallory" not in entry.actor_name
    assert entry.actor_name == f"manage.py replay_dead_letters (OS account {pwd.getpwuid(os.geteuid()).pw_name})"


@pytest.mark.parametrize(("actor", "refusal"), [
    (None, "--actor"), ("nobody", "no user 'nobody'"), ("viewer", "may not replay"), ("gone", "inactive"),
])
def test_an_actor_that_is_missing_unknown_inactive_or_without_the_permission_is_refused(
    actor: str | None, refusal: str
) -> None:
    User.objects.create_user("viewer", is_staff=True)
    User.objects.create_user("gone", is_staff=True, is_active=False).user_permissions.add(
        Permission.objects.get(codename="replay_deadletter")
    )
    letter = missing_route(1)

    with pytest.raises(CommandError, match=refusal):
        replay("--failure-group", letter.fingerprint, actor=actor)

    assert DeadLetter.objects.get(pk=letter.pk).status == "pending"


def test_a_dead_letters_id_selects_its_failure_group_and_group_narrows_it() -> None:
    same = [missing_route(seq) for seq in (1, 2)]
    elsewhere = other_group_letter(3)
    assert elsewhere.fingerprint == same[0].fingerprint

    out = replay("--failure-group", f"#{same[1].pk}", "--group", "testing")

    assert "replayed 2 dead letters (group testing, failure group" in out
    assert DeadLetter.objects.get(pk=elsewhere.pk).status == "pending"


def test_dry_run_lists_what_would_be_replayed_and_changes_nothing() -> None:
    letters = [missing_route(seq) for seq in (1, 2)]

    out = replay("--group", "testing", "--dry-run")

    assert out == f"would replay 2 dead letters (group testing, status pending/retrying): #{letters[0].pk}, #{letters[1].pk}\n"
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"pending"}
    assert Effect.objects.count() == 0


def test_limit_replays_only_the_oldest() -> None:
    letters = [missing_route(seq) for seq in (1, 2, 3)]

    replay("--group", "testing", "--limit", "2")

    assert [DeadLetter.objects.get(pk=d.pk).status for d in letters] == ["replayed", "replayed", "pending"]


def test_status_selects_retrying_ones_only() -> None:
    pending, retrying = missing_route(1), missing_route(2)
    DeadLetter.objects.filter(pk=retrying.pk).update(status=DeadLetter.Status.RETRYING)

    replay("--group", "testing", "--status", "retrying")

    assert DeadLetter.objects.get(pk=pending.pk).status == "pending"
    assert DeadLetter.objects.get(pk=retrying.pk).status == "replayed"


def test_a_head_releases_its_parked_messages_which_are_not_replayed_twice() -> None:
    head = missing_route(1)
    parked = parked_dead_letter(2, head)

    out = replay("--group", "testing")

    assert "replayed 1 dead letter " in out and "1 parked message released" in out
    assert DeadLetter.objects.get(pk=parked.pk).status == "replayed"


def test_a_replay_that_fails_again_is_reported_on_stderr_and_stays_pending() -> None:
    Script.objects.create(scenario="broken", broken=True)
    letter = dead_letter(1)  # scenario "broken"
    stderr = io.StringIO()

    out = replay("--group", "testing", stderr=stderr)

    assert "1 failed" in out
    assert f"#{letter.pk} failed again: scenario broken is broken" in stderr.getvalue()
    assert DeadLetter.objects.get(pk=letter.pk).status == "pending"


def test_nothing_to_replay_is_said_plainly_and_is_no_error() -> None:
    letter = missing_route(1)
    DeadLetter.objects.filter(pk=letter.pk).update(status=DeadLetter.Status.DISCARDED)

    assert replay("--failure-group", letter.fingerprint) == (
        f"no dead letters to replay (failure group {letter.fingerprint}, status pending/retrying)\n"
    )


def test_progress_is_drawn_on_a_terminal_and_absent_from_a_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Progress, "INTERVAL", 0.0)
    for seq in (1, 2, 3, 4):
        missing_route(seq)
    terminal, log = Terminal(), io.StringIO()

    replay("--group", "testing", "--limit", "2", stderr=terminal)
    replay("--group", "testing", stderr=log)

    assert ERASE_LINE + "replaying dead letters: 2/2 (100 %)" in terminal.getvalue()
    assert log.getvalue() == ""


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "name what to replay: --group, --failure-group, or both"),
        (["--group", "nobody"], "unknown consumer group 'nobody'; known groups: "),
        (["--failure-group", "0123456789abcdef"], "no dead letter has the fingerprint 0123456789abcdef"),
        (["--failure-group", "#999999"], "there is no dead letter #999999"),
        (["--failure-group", "route missing"], "is neither a fingerprint (16 hex digits) nor a dead letter's id"),
        (["--group", "testing", "--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bad_selectors_are_refused_with_a_clear_message_and_nothing_replayed(args: list[str], message: str) -> None:
    missing_route(1)

    with pytest.raises(CommandError) as refused:
        replay(*args)

    assert message in str(refused.value)
    assert DeadLetter.objects.get().status == "pending"
