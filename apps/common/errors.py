"""The REST API's errors, shared by every app: `ApplicationError` (a domain rule refused the request) and the one
place that maps errors to HTTP responses (DRF's exception handler, the JSON 404, JSON for Django's own errors
under /api/)."""

from __future__ import annotations

from collections.abc import Callable
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


# The API's error bodies for the refusals Django itself may answer (DRF's wording).
API_ERROR_DETAILS = {
    401: "Authentication credentials were not provided.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
}


class ApiErrorsAsJson:
    """Middleware: under /api/, an error Django answered with a page (with DEBUG on, a path that matches no route
    gets the technical 404 page, not handler404) becomes the JSON body every other API error has."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        detail = API_ERROR_DETAILS.get(response.status_code)
        if detail and request.path.startswith("/api/") and "json" not in response.get("Content-Type", ""):
            return JsonResponse({"detail": detail}, status=response.status_code)
        return response
