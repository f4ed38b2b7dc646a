"""Top-level URLs: admin, the versioned REST API, schema docs and health probes."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from apps.common import health

admin.site.site_header = "LogiFlow"
admin.site.site_title = "LogiFlow admin"

api_v1 = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("", include("apps.routing.urls")),
    path("", include("apps.invoicing.urls")),
    path("", include("apps.consumers.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("healthz", health.live, name="health-live"),
    path("readyz", health.ready, name="health-ready"),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
