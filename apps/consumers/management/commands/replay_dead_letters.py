"""`manage.py replay_dead_letters`: replay a consumer group's or a failure group's dead letters from the command
line, one transaction each, through the same service as the admin's "Replay" (`deadletter_replay`).

Who acted is `--actor`, a user of this site who may replay, and the OS account the process runs as (its effective
uid, which the caller cannot choose as it can `USER`); both go into every history entry."""

from __future__ import annotations

import os
import pwd
import re
from collections import Counter

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.errors import ApplicationError
from apps.common.progress import Progress
from apps.common.text import counted
from apps.consumers import registry, selectors
from apps.consumers.models import DeadLetter
from apps.consumers.replay import deadletter_replay

FINGERPRINT = re.compile(r"[0-9a-f]{16}")
DEAD_LETTER_ID = re.compile(r"#?([0-9]+)")
SHOWN = 20  # ids listed in a dry run and failures reported, at most


class Command(BaseCommand):
    help = (
        "Replay pending (and retrying) dead letters of a consumer group and/or a failure group, oldest first, "
        "each in its own transaction; parked messages behind each run after it, as in the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--actor", required=True, metavar="USERNAME",
            help="the user of this site the replays are done for (must be active and may replay dead letters)",
        )
        parser.add_argument("--group", help="consumer group, e.g. invoicing")
        parser.add_argument(
            "--failure-group", metavar="FINGERPRINT_OR_ID",
            help="a failure group: its fingerprint (16 hex digits, as the ledger and its filter show it), "
                 "or a dead letter's id (42 or #42) for the failure group that dead letter is in",
        )
        parser.add_argument(
            "--status", action="append", choices=[DeadLetter.Status.PENDING, DeadLetter.Status.RETRYING],
            help="only dead letters in this status (repeatable; default: pending and retrying)",
        )
        parser.add_argument("--limit", type=int, help="replay at most this many (the oldest)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be replayed, replay nothing")

    def handle(
        self, *args: object, actor: str, group: str | None, failure_group: str | None, status: list[str] | None,
        limit: int | None, dry_run: bool, **options: object,
    ) -> None:
        user = _actor(actor)
        if group is None and failure_group is None:
            raise CommandError("name what to replay: --group, --failure-group, or both")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        if group is not None:
            _check_group(group)
        fingerprint = _fingerprint(failure_group) if failure_group is not None else None
        fingerprints = [fingerprint] if fingerprint is not None else None
        ids = list(selectors.replayable(group=group, fingerprints=fingerprints, statuses=status)
                   .values_list("id", flat=True)[:limit])
        scope = _scope(group, fingerprint, status)
        if not ids:
            self.stdout.write(f"no dead letters to replay ({scope})")
        elif dry_run:
            self.stdout.write(f"would replay {counted(len(ids), 'dead letter')} ({scope}): {_listed(ids)}")
        else:
            self._replay(ids, scope, actor=user)

    def _replay(self, ids: list[int], scope: str, *, actor: AbstractBaseUser) -> None:
        actor_name = f"manage.py replay_dead_letters (OS account {_os_account()})"
        outcomes: Counter[str] = Counter()
        problems: list[str] = []
        released = 0
        with Progress(self.stderr, "replaying dead letters", total=len(ids)) as progress:
            for dead_letter_id in ids:
                try:
                    result = deadletter_replay(dead_letter_id=dead_letter_id, actor=actor, actor_name=actor_name)
                except ApplicationError as error:  # resolved or parked meanwhile, or at the replay cap
                    outcomes["refused"] += 1
                    problems.append(f"#{dead_letter_id} not replayed: {error.message}")
                else:
                    outcomes[result.outcome] += 1
                    released += len(result.released)
                    if result.error:
                        problems.append(f"#{dead_letter_id} failed again: {result.error[:200]}")
                progress.advance()
        for problem in problems[:SHOWN]:
            self.stderr.write(problem)
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
        self.stdout.write(
            f"replayed {counted(len(ids), 'dead letter')} ({scope}): {summary}; "
            f"{counted(released, 'parked message')} released"
        )


def _check_group(group: str) -> None:
    known = sorted(set(registry.groups()) | set(selectors.ledger_groups()))
    if group not in known:
        raise CommandError(f"unknown consumer group {group!r}; known groups: {', '.join(known) or 'none'}")


def _fingerprint(value: str) -> str:
    """The failure group's fingerprint from what the admin shows: a fingerprint, or a dead letter's id."""
    value = value.strip()
    if FINGERPRINT.fullmatch(value):
        if not selectors.fingerprint_known(value):
            raise CommandError(f"no dead letter has the fingerprint {value}")
        return value
    as_id = DEAD_LETTER_ID.fullmatch(value)
    if as_id:
        found = selectors.fingerprint_of(int(as_id.group(1)))
        if found is None:
            raise CommandError(f"there is no dead letter #{as_id.group(1)}")
        return found
    raise CommandError(
        f"--failure-group {value!r} is neither a fingerprint (16 hex digits) nor a dead letter's id (42 or #42)"
    )


def _scope(group: str | None, fingerprint: str | None, statuses: list[str] | None) -> str:
    parts = [f"group {group}"] if group else []
    parts += [f"failure group {fingerprint}"] if fingerprint else []
    parts.append("status " + "/".join(statuses or [DeadLetter.Status.PENDING, DeadLetter.Status.RETRYING]))
    return ", ".join(parts)


def _listed(ids: list[int]) -> str:
    shown = ", ".join(f"#{i}" for i in ids[:SHOWN])
    return shown + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def _actor(username: str) -> AbstractBaseUser:
    user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f"there is no user {username!r}: --actor names a user of this site")
    if not user.is_active:
        raise CommandError(f"user {username!r} is inactive")
    if not user.has_perm("consumers.replay_deadletter"):
        raise CommandError(f"user {username!r} may not replay dead letters (consumers.replay_deadletter)")
    return user


def _os_account() -> str:
    """The account of the process's effective uid: unlike `USER` or `LOGNAME`, not the caller's to choose."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (a container run with --user 12345)
        return f"uid {uid}"
