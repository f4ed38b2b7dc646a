"""The REST API's errors, shared by every app: `ApplicationError` (a domain rule refused the request) and the one
place that maps errors to HTTP responses (DRF's exception handler, the JSON 404)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    """A domain rule refused the request; `field` names the input at fault when there is one."""

    def __init__(
        self, message: str, *, field: str | None = None, extra: dict[str, Any] | None = None, code: str = "invalid"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}
        self.code = code  # "unique": the input collides with an existing row (409)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """400 with field errors for Django `ValidationError` and `ApplicationError` (409 when the only fault is a
    uniqueness collision); DRF's handler for the rest."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, ApplicationError):
        message = exceptions.ErrorDetail(exc.message, code=exc.code)
        detail = {exc.field: [message]} if exc.field else {"detail": message}
        exc = exceptions.ValidationError({**detail, **exc.extra})
    if isinstance(exc, exceptions.ValidationError) and _only_uniqueness(exc.get_codes()):
        exc.status_code = 409  # the input is fine; it collides with a row that exists (e.g. a depot's name)
    return drf_exception_handler(exc, context)


def _only_uniqueness(codes: object) -> bool:
    if isinstance(codes, dict):
        return bool(codes) and all(_only_uniqueness(value) for value in codes.values())
    if isinstance(codes, list):
        return bool(codes) and all(_only_uniqueness(value) for value in codes)
    return codes == "unique"


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: under /api/ a JSON body like every other API error (a path that matched no route, e.g. a
    non-numeric id); elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
