"""A storage backend that is down, to make PDF renders fail the way a full disk or an S3 outage does."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import FileSystemStorage


class UnavailableStorage(FileSystemStorage):
    def _save(self, name: str, content: Any) -> str:
        raise OSError("storage unavailable: no space left on device")


UNAVAILABLE = {"BACKEND": "tests.invoicing.storages.UnavailableStorage"}
