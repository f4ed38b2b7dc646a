"""The inbox: old rows go after their retention (applying through the inbox is exercised by every replay)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.consumers.inbox import inbox_purge
from apps.consumers.models import InboxEntry

pytestmark = pytest.mark.django_db


def test_inbox_purge_deletes_only_rows_past_retention(settings: object) -> None:
    settings.CONSUMER_INBOX_RETENTION_DAYS = 14  # type: ignore[attr-defined]
    now = timezone.now()
    InboxEntry.objects.create(group="testing", event_id=uuid.uuid4(), processed_at=now - timedelta(days=15))
    recent = InboxEntry.objects.create(group="testing", event_id=uuid.uuid4(), processed_at=now - timedelta(days=13))
    assert inbox_purge() == 1
    assert list(InboxEntry.objects.all()) == [recent]
