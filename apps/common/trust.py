"""Who is asking: the client's address (X-Forwarded-For counts only as written by a proxy in
TRUSTED_PROXY_NETWORKS) and the metrics bearer token. The API throttles, django-axes, `/metrics` and `/readyz`
all ask here, so they agree on one answer."""

from __future__ import annotations

import ipaddress
import secrets

from django.conf import settings
from django.http import HttpRequest

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, unless it is a trusted proxy: then X-Forwarded-For read from the right, past every trusted proxy.

    Each proxy appends the address it saw, so only entries right of the first untrusted one were written by a
    proxy we trust; anything left of it is the client's say-so. An entry that is no address stops the walk at the
    proxy that wrote it (the proxy is all we know).
    """
    remote = request.META.get("REMOTE_ADDR", "")
    networks = _trusted_networks()
    address = _parse(remote)
    if address is None or not _within(address, networks):
        return remote
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for entry in reversed([entry for entry in forwarded if entry]):
        hop = _parse(entry)
        if hop is None:
            return str(address)
        address = hop
        if not _within(address, networks):
            break
    return str(address)


def has_metrics_token(request: HttpRequest) -> bool:
    """The request carries "Authorization: Bearer <METRICS_TOKEN>" (and a token is configured)."""
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return bool(token) and header.startswith("Bearer ") and secrets.compare_digest(header[7:].encode(), token.encode())


def is_metrics_client(request: HttpRequest) -> bool:
    """The metrics token, or a client address (see `client_address`) in METRICS_ALLOWED_NETWORKS."""
    if has_metrics_token(request):
        return True
    address = _parse(client_address(request))
    return address is not None and _within(address, _networks(settings.METRICS_ALLOWED_NETWORKS))


def _trusted_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return _networks(settings.TRUSTED_PROXY_NETWORKS)


def _networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(value, strict=False) for value in values]


def _within(address: _Address, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    return any(address in network for network in networks)


def _parse(text: str) -> _Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
