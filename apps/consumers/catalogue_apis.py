"""The event catalogue on the web, beside the OpenAPI schema and with its permissions: the AsyncAPI document
(`/api/asyncapi/`, YAML or `?format=json`) and a page that renders it (`/api/events/`) with the official AsyncAPI
renderer, vendored under `static/consumers/vendor/asyncapi-react/` (no CDN; scripts only from this server).

The renderer compiles JSON Schemas into functions when it loads (Ajv, inside the AsyncAPI parser it bundles), which
the site's CSP forbids ('unsafe-eval'). Rather than loosen the site's policy, the page runs sandboxed: its CSP adds
`sandbox allow-scripts`, so the browser gives it an opaque origin (no cookies, no session, no same-origin requests,
no access to other pages of the site), and only there allows 'unsafe-eval'. The document travels inside the page as
JSON data, since a sandboxed page cannot fetch it with the session.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from csp.decorators import csp_update
from django.utils.decorators import method_decorator
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import AUTHENTICATION_CLASSES
from rest_framework.renderers import BaseRenderer, JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.consumers.catalogue import asyncapi_document


class YamlRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        plain = json.loads(JSONRenderer().render(data))  # DRF's types (an error's ErrorDetail) as plain JSON data
        return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True).encode()


class AsyncApiDocumentApi(APIView):
    """The AsyncAPI 3.0 document of the events (`manage.py asyncapi` prints the same)."""

    renderer_classes = [YamlRenderer, JSONRenderer]
    permission_classes = spectacular_settings.SERVE_PERMISSIONS
    authentication_classes = AUTHENTICATION_CLASSES

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response(asyncapi_document())


# What the sandboxed page may do beyond the site's policy (see the module docstring).
SANDBOXED_RENDERER = {"sandbox": ["allow-scripts"], "script-src": ["'unsafe-eval'"]}


@method_decorator(csp_update(SANDBOXED_RENDERER), name="dispatch")
class AsyncApiPageApi(APIView):
    """The catalogue for people: the document rendered by `@asyncapi/react-component`'s standalone bundle."""

    renderer_classes = [TemplateHTMLRenderer]
    permission_classes = spectacular_settings.SERVE_PERMISSIONS
    authentication_classes = AUTHENTICATION_CLASSES

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response(
            {"document": asyncapi_document(), "document_url": reverse("asyncapi", request=request)},
            template_name="consumers/asyncapi.html",
        )
