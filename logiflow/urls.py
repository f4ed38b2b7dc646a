"""Top-level URLs: admin, the versioned REST API, schema docs, the event catalogue and health probes."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path, reverse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.common import health
from apps.common.auth_apis import TokenLoginApi, TokenLogoutAllApi, TokenLogoutApi
from apps.consumers.catalogue_apis import AsyncApiDocumentApi, AsyncApiPageApi
from apps.ops.apis import MetricsApi

admin.site.site_header = "LogiFlow"
admin.site.site_title = "LogiFlow admin"
admin.site.index_template = "admin/logiflow_index.html"  # adds what needs each role (apps/ops)



def home(request: HttpRequest) -> HttpResponseRedirect:
    """The site's root ("View site"): everyone's pages are in the admin."""
    return HttpResponseRedirect(reverse("admin:index"))


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """/favicon.ico, which browsers ask for whatever the page names: the site's icon."""
    return HttpResponseRedirect(static("common/favicon.svg"))


api_v1 = [
    path("auth/token/", TokenLoginApi.as_view(), name="api-token"),
    path("auth/logout/", TokenLogoutApi.as_view(), name="api-logout"),
    path("auth/logout-all/", TokenLogoutAllApi.as_view(), name="api-logout-all"),
    path("", include("apps.routing.urls")),
    path("", include("apps.invoicing.urls")),
    path("", include("apps.consumers.urls")),
]

urlpatterns = [
    path("", home, name="home"),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    # The event catalogue (AsyncAPI), beside the OpenAPI schema and with the same permissions.
    path("api/asyncapi/", AsyncApiDocumentApi.as_view(), name="asyncapi"),
    path("api/events/", AsyncApiPageApi.as_view(), name="asyncapi-ui"),
    path("healthz", health.live, name="health-live"),
    path("readyz", health.ready, name="health-ready"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
]
handler404 = "apps.common.errors.not_found"
# MEDIA_ROOT is never served: invoice PDFs go out only through the permissioned API and admin.
