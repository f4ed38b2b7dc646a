"""API plumbing shared by every app: one place maps domain errors to HTTP responses."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    """A domain rule refused the request; `field` names the input at fault when there is one."""

    def __init__(self, message: str, *, field: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """400 with field errors for Django `ValidationError` and `ApplicationError`; DRF's handler for the rest."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, ApplicationError):
        detail = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        exc = exceptions.ValidationError({**detail, **exc.extra})
    return drf_exception_handler(exc, context)

