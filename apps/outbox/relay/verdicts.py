"""What a row's delivery report means for the row: a pure function of the report, testable without a broker."""

from __future__ import annotations

from enum import StrEnum

from confluent_kafka import KafkaError

# Refused for good: no retry of the same bytes can ever succeed. The row becomes `failed` (kept, shown
# first in the admin, re-sendable once someone changed the broker's limits).
PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)

# Refused until a person changes the cluster (an ACL, a missing topic, a policy): the rows stay pending and
# are retried with backoff like any transient error, but each one is reported loudly — an ERROR line, a
# RelayProblem row for the admin and `/readyz` — since waiting alone will not fix it. Never `failed`:
# marking a row failed for a misconfiguration that is fixed an hour later would silently drop it.
NEEDS_A_PERSON_ERRORS = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.POLICY_VIOLATION,
    }
)

# The producer itself failed, not the broker: the message never left this process (or cannot be known to
# have). Such a row is not counted as an attempt; it simply goes again with the next producer.
NOT_SENT_ERRORS = frozenset({KafkaError._FATAL, KafkaError._PURGE_QUEUE})

Report = tuple[int, int] | KafkaError | None  # (partition, offset) once acknowledged; None: no report came


class Verdict(StrEnum):
    DELIVERED = "delivered"  # published, at its partition and offset
    REFUSED_FOR_GOOD = "refused_for_good"  # failed: kept for a person, never retried by itself
    NEEDS_A_PERSON = "needs_a_person"  # pending, attempt counted, and reported as a relay problem
    RETRY = "retry"  # pending, attempt counted (broker down, timeout, no report at all)
    NOT_SENT = "not_sent"  # pending, no attempt: the producer failed before the broker saw it


def verdict(report: Report) -> Verdict:
    if isinstance(report, tuple):
        return Verdict.DELIVERED
    if report is None:
        return Verdict.RETRY
    if report.code() in PERMANENT_ERRORS and not report.fatal():
        return Verdict.REFUSED_FOR_GOOD
    if report.code() in NOT_SENT_ERRORS:
        return Verdict.NOT_SENT
    if report.code() in NEEDS_A_PERSON_ERRORS:
        return Verdict.NEEDS_A_PERSON
    return Verdict.RETRY


def reason(report: Report) -> str:
    """The row's `last_error` for a report that was not a delivery."""
    return report.str() if isinstance(report, KafkaError) else "no delivery report"
