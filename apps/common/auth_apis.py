"""Authentication endpoints of the REST API: API tokens (django-rest-knox) stored hashed, with an expiry.

A client logs in with username and password and gets a token valid for API_TOKEN_TTL_HOURS; to renew it
logs in again before the expiry (and may log the old token out). A user holds at most TOKEN_LIMIT_PER_USER live
tokens (403 past it). Logins count towards django-axes' lockout, leave its access log and `last_login` as a session
login does, and are throttled by the "auth" scope. Wrong credentials answer 401; malformed input 400.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from knox.views import LogoutAllView, LogoutView
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.serializers import ErrorSerializer, StrictInput
from apps.common.services import TokenLimitReached, api_token_create

ERROR_RESPONSE = ErrorSerializer


class LoginInputSerializer(StrictInput, AuthTokenSerializer):
    # No user has a longer name, and django-axes, which records a failed login with its username in a 255-character
    # column, would fail on one (a 500 instead of a 400).
    username = serializers.CharField(
        label="Username", write_only=True, max_length=get_user_model()._meta.get_field("username").max_length,
    )

    class Meta:
        ref_name = "TokenLoginInput"


class TokenLoginApi(APIView):
    """POST username and password → a new API token and its expiry."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "auth"

    @extend_schema(
        request=LoginInputSerializer,
        responses={
            200: inline_serializer(
                "TokenOutput", {"token": serializers.CharField(), "expiry": serializers.DateTimeField()}
            ),
            401: OpenApiResponse(
                ERROR_RESPONSE, description="No user with that username and password (or locked out)."
            ),
            403: OpenApiResponse(
                ERROR_RESPONSE, description="The user holds TOKEN_LIMIT_PER_USER live tokens: log one out first."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = LoginInputSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            if _wrong_credentials(serializer.errors):
                return Response({"detail": "Unable to log in with the provided credentials."},
                                status=status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": "Token"})
            raise ValidationError(serializer.errors)
        try:
            instance, token = api_token_create(user=serializer.validated_data["user"], request=request)
        except TokenLimitReached as error:
            raise PermissionDenied(error.message) from None
        return Response({"token": token, "expiry": instance.expiry})


def _wrong_credentials(errors: dict) -> bool:
    """Well-formed username and password that authenticate nobody (or a locked-out pair): 401, not 400."""
    return set(errors) == {"non_field_errors"} and any(e.code == "authorization" for e in errors["non_field_errors"])


@extend_schema_view(post=extend_schema(request=None, responses={204: None}))
class TokenLogoutApi(LogoutView):
    """POST with the token: it stops working at once."""

    def post(self, request: Request, format: str | None = None) -> Response:  # noqa: A002 - knox's signature
        if request.auth is None:  # authenticated without a token (forced in tests): nothing to end
            return self.get_post_response(request)
        return super().post(request, format)


@extend_schema_view(post=extend_schema(request=None, responses={204: None}))
class TokenLogoutAllApi(LogoutAllView):
    """POST with any of the user's tokens: every token of the user stops working."""

