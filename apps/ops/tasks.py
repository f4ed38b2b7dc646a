"""Celery tasks of operations: thin wrappers over its services."""

from __future__ import annotations

from celery import shared_task

from apps.ops.services import consumer_lag_sample, flow_sample_take


@shared_task(name="apps.common.tasks.sample_flow")  # its name before it moved: queued messages still run
def sample_flow() -> int:
    """The dashboard's charts (beat, every minute): one sample of the flow; returns its id."""
    return flow_sample_take().pk


@shared_task
def sample_consumer_lag() -> list[str]:
    """Consumer lag read from the broker (beat, every CONSUMER_LAG_SAMPLE_INTERVAL_S); returns the groups the
    broker did not answer for."""
    return consumer_lag_sample()
