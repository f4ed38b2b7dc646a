"""DRF's throttles keyed on `trust.client_address`: DRF's own `get_ident` believes X-Forwarded-For unless
NUM_PROXIES is set, and would then count proxies differently from django-axes and `/metrics`."""

from __future__ import annotations

from rest_framework import throttling
from rest_framework.request import Request

from apps.common.trust import client_address


class _ClientAddress:
    def get_ident(self, request: Request) -> str:
        return client_address(request._request)


class AnonRateThrottle(_ClientAddress, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_ClientAddress, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(_ClientAddress, throttling.ScopedRateThrottle):
    pass
