"""Routing's API routes, mounted under /api/v1/."""

from rest_framework.routers import SimpleRouter

from apps.routing import apis

# Path routes with the `<id:…>` converter (the viewsets set lookup_value_converter): an oversized id matches no URL.
router = SimpleRouter(use_regex_path=False)
router.register("depots", apis.DepotViewSet, basename="depot")
router.register("trucks", apis.TruckViewSet, basename="truck")
router.register("customers", apis.CustomerViewSet, basename="customer")
router.register("routes", apis.RouteViewSet, basename="route")

urlpatterns = router.urls
