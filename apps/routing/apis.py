"""Routing's REST API: reference data (depots, trucks, customers) and routes. Every write calls a service."""

from __future__ import annotations

from typing import Any

import django_filters
from django.conf import settings
from django.db.models import Model, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.common.filters import IdFilter, StrictFilterSet
from apps.common.permissions import ModelPermissions
from apps.common.serializers import StrictInput
from apps.contracts.routing import MAX_STOPS
from apps.routing import selectors, services
from apps.routing.models import Customer, Depot, Route, Truck


class ChangeRoutePermission(ModelPermissions):
    """Recalculating, dispatching, completing and cancelling change an existing route: POST needs `change_route`."""

    perms_map = {**ModelPermissions.perms_map, "POST": ["%(app_label)s.change_%(model_name)s"]}


class ReferenceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """List, create, retrieve and update one kind of reference data through its create/update services.

    Subclasses give nested InputSerializer/OutputSerializer and the two services.
    """

    permission_classes = [ModelPermissions]
    lookup_value_converter = "id"
    InputSerializer: type[serializers.Serializer]
    OutputSerializer: type[serializers.Serializer]

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return self.OutputSerializer

    def create(self, request: Request) -> Response:
        data = self._valid_input(request, partial=False)
        instance = self.create_object(**data)
        return Response(self.OutputSerializer(instance).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        instance = self.get_object()
        data = self._valid_input(request, partial=partial)
        instance = self.update_object(instance, data)
        return Response(self.OutputSerializer(instance).data)

    def partial_update(self, request: Request, pk: str) -> Response:
        return self.update(request, pk, partial=True)

    def create_object(self, **data: Any) -> Model:
        raise NotImplementedError

    def update_object(self, instance: Any, data: dict[str, Any]) -> Model:
        raise NotImplementedError

    def _valid_input(self, request: Request, *, partial: bool) -> dict[str, Any]:
        serializer = self.InputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class DepotViewSet(ReferenceViewSet):
    """Depots: where trucks are based and every route starts."""

    class InputSerializer(StrictInput, serializers.Serializer):
        name = serializers.CharField(max_length=200)
        address = serializers.CharField(max_length=300, required=False, allow_blank=True)
        lat = serializers.FloatField(min_value=-90, max_value=90)
        lon = serializers.FloatField(min_value=-180, max_value=180)

        class Meta:
            ref_name = "DepotInput"

    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Depot
            fields = ["id", "name", "address", "lat", "lon"]
            ref_name = "Depot"

    def get_queryset(self) -> QuerySet[Depot]:
        return selectors.depot_list()

    def create_object(self, **data: Any) -> Depot:
        return services.depot_create(**data)

    def update_object(self, instance: Depot, data: dict[str, Any]) -> Depot:
        return services.depot_update(depot=instance, data=data)


class TruckFilter(StrictFilterSet):
    depot = IdFilter(field_name="depot_id")
    active = django_filters.BooleanFilter()

    class Meta:
        model = Truck
        fields = ["depot", "active"]


class TruckViewSet(ReferenceViewSet):
    """Trucks: plate, home depot, capacity, average speed; inactive trucks get no new routes."""

    filterset_class = TruckFilter

    class InputSerializer(StrictInput, serializers.Serializer):
        plate = serializers.CharField(max_length=20)
        depot = serializers.PrimaryKeyRelatedField(queryset=Depot.objects.all())
        capacity_kg = serializers.IntegerField(min_value=1)
        average_speed_kmh = serializers.IntegerField(min_value=1, max_value=200)
        active = serializers.BooleanField(required=False, default=True)

        class Meta:
            ref_name = "TruckInput"

    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Truck
            fields = ["id", "plate", "depot", "capacity_kg", "average_speed_kmh", "active"]
            ref_name = "Truck"

    def get_queryset(self) -> QuerySet[Truck]:
        return selectors.truck_list()

    def create_object(self, **data: Any) -> Truck:
        return services.truck_create(**data)

    def update_object(self, instance: Truck, data: dict[str, Any]) -> Truck:
        return services.truck_update(truck=instance, data=data)


class CustomerViewSet(ReferenceViewSet):
    """Customers: the shippers routes are run for (invoicing bills them by this id)."""

    class InputSerializer(StrictInput, serializers.Serializer):
        name = serializers.CharField(max_length=200)
        email = serializers.EmailField(required=False, allow_blank=True)
        phone = serializers.CharField(max_length=40, required=False, allow_blank=True)

        class Meta:
            ref_name = "CustomerInput"

    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Customer
            fields = ["id", "name", "email", "phone"]
            ref_name = "Customer"

    def get_queryset(self) -> QuerySet[Customer]:
        return selectors.customer_list()

    def create_object(self, **data: Any) -> Customer:
        return services.customer_create(**data)

    def update_object(self, instance: Customer, data: dict[str, Any]) -> Customer:
        return services.customer_update(customer=instance, data=data)


def _document_writes(viewset: type[ReferenceViewSet]) -> None:
    """Tell the schema that writes take the InputSerializer (the nested classes exist only after the class body)."""
    request, response = viewset.InputSerializer, viewset.OutputSerializer
    extend_schema_view(
        create=extend_schema(request=request, responses={201: response}),
        update=extend_schema(request=request, responses=response),
        partial_update=extend_schema(request=request, responses=response),
    )(viewset)


for _viewset in (DepotViewSet, TruckViewSet, CustomerViewSet):
    _document_writes(_viewset)


class RouteFilter(StrictFilterSet):
    truck = IdFilter(field_name="truck_id")
    customer = IdFilter(field_name="customer_id")
    date = django_filters.DateFilter(
        field_name="departs_at", lookup_expr="date", label="Departure date, in the site's time zone"
    )

    class Meta:
        model = Route
        fields = ["truck", "customer", "status", "date"]


REFUSED_TRANSITION = OpenApiResponse(description="The route's status does not allow it: `{\"status\": [message]}`.")


class RouteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Routes: a truck's tour for a customer, stops in visiting order with ETAs.

    Creating and recalculating a route both publish RouteCalculated in the same transaction. Dispatch, complete
    and cancel move the route through its lifecycle (no event); a refused transition is 400 naming `status`.
    """

    permission_classes = [ModelPermissions]
    lookup_value_converter = "id"
    filterset_class = RouteFilter
    throttle_scope: str | None = None  # an action that costs work sets its own (recalculate)

    class InputSerializer(StrictInput, serializers.Serializer):
        class StopSerializer(StrictInput, serializers.Serializer):
            name = serializers.CharField(max_length=200)
            lat = serializers.FloatField(min_value=-90, max_value=90)
            lon = serializers.FloatField(min_value=-180, max_value=180)

            class Meta:
                ref_name = "RouteStopInput"

        truck = serializers.PrimaryKeyRelatedField(queryset=Truck.objects.select_related("depot"))
        customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all())
        departs_at = serializers.DateTimeField(
            required=False, help_text="With its time zone offset (`Z` or `+03:00`; a time without one is refused). "
                                      "Defaults to now.",
        )
        stops = StopSerializer(many=True, allow_empty=False)
        stop_order = serializers.ChoiceField(
            choices=Route.StopOrder.choices, default=Route.StopOrder.OPTIMISED,
            help_text="`as_given`: visit the stops in the order sent. `optimised` (the default, what the API did "
                      "before the choice existed): the shortest tour found from the depot; each stop's "
                      "`given_position` says where it was sent.",
        )

        class Meta:
            ref_name = "RouteInput"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Refused before a single stop is validated (a 45,000-stop body costs nothing); read per request, and
            # never past what RouteCalculated may carry (the route would be saved and its event refused).
            self.fields["stops"].max_length = min(settings.ROUTING_MAX_STOPS, MAX_STOPS)

    class OutputSerializer(serializers.ModelSerializer):
        class StopSerializer(serializers.Serializer):
            sequence = serializers.IntegerField()
            name = serializers.CharField()
            lat = serializers.FloatField()
            lon = serializers.FloatField()
            eta = serializers.DateTimeField(source="planned_arrival")
            leg_distance_km = serializers.DecimalField(max_digits=10, decimal_places=3)
            given_position = serializers.IntegerField(
                allow_null=True, help_text="Where the stop was listed when the route was created (1 = first); "
                                           "null for routes planned before it was kept.",
            )

            class Meta:
                ref_name = "RouteStop"

        truck_plate = serializers.CharField(source="truck.plate")
        customer_name = serializers.CharField(source="customer.name")
        invoiced = serializers.BooleanField()
        stops = StopSerializer(many=True)  # in visiting order: the selector prefetches them by sequence

        class Meta:
            model = Route
            fields = [
                "id", "truck", "truck_plate", "customer", "customer_name", "depot", "status", "status_changed_at",
                "cancel_reason", "calculation", "stop_order",
                "departs_at", "distance_km", "duration_minutes", "eta", "calculated_at", "stops",
                "invoiced", "invoice_number", "invoiced_at",
            ]
            ref_name = "Route"

    class CancelInputSerializer(StrictInput, serializers.Serializer):
        reason = serializers.CharField(max_length=300, help_text="Kept on the route.")

        class Meta:
            ref_name = "RouteCancelInput"

    def get_queryset(self) -> QuerySet[Route]:
        return selectors.route_list()

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return self.OutputSerializer

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def create(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        route = services.route_calculate(
            truck=data["truck"],
            customer=data["customer"],
            stops=[services.StopInput(**stop) for stop in data["stops"]],
            departs_at=data.get("departs_at"),
            stop_order=data["stop_order"],
        )
        return Response(self._output(route), status=status.HTTP_201_CREATED)

    class RecalculateOutputSerializer(OutputSerializer):
        recalculated = serializers.BooleanField(
            help_text="False when the plan would not have changed: no new calculation, no event, no new invoice."
        )

    # (a nested `class Meta` could not see OutputSerializer: class bodies do not nest scopes; mypy would rather
    # the class kept the Meta it inherited)
    RecalculateOutputSerializer.Meta = type(  # type: ignore[misc,assignment]
        "Meta", (OutputSerializer.Meta,),
        {"fields": [*OutputSerializer.Meta.fields, "recalculated"], "ref_name": "RouteRecalculation"},
    )


    @extend_schema(request=None, responses=RecalculateOutputSerializer)
    @action(detail=True, methods=["post"], permission_classes=[ChangeRoutePermission], throttle_scope="recalculate")
    def recalculate(self, request: Request, pk: str) -> Response:
        route = services.route_recalculate(route=self.get_object())
        return Response({**self._output(route), "recalculated": route.recalculated})

    # Not named `dispatch`: that is the view's own request-dispatch method.
    @extend_schema(
        request=None, responses={200: OutputSerializer, 400: REFUSED_TRANSITION},
        summary="Dispatch a planned or calculated route",
    )
    @action(detail=True, methods=["post"], url_path="dispatch", url_name="dispatch",
            permission_classes=[ChangeRoutePermission])
    def dispatch_route(self, request: Request, pk: str) -> Response:
        return Response(self._output(services.route_dispatch(route=self.get_object())))

    @extend_schema(
        request=None, responses={200: OutputSerializer, 400: REFUSED_TRANSITION},
        summary="Complete a dispatched route",
    )
    @action(detail=True, methods=["post"], permission_classes=[ChangeRoutePermission])
    def complete(self, request: Request, pk: str) -> Response:
        return Response(self._output(services.route_complete(route=self.get_object())))

    @extend_schema(
        request=CancelInputSerializer, responses={200: OutputSerializer, 400: REFUSED_TRANSITION},
        summary="Cancel an unfinished route",
    )
    @action(detail=True, methods=["post"], permission_classes=[ChangeRoutePermission])
    def cancel(self, request: Request, pk: str) -> Response:
        serializer = self.CancelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        route = services.route_cancel(route=self.get_object(), reason=serializer.validated_data["reason"])
        return Response(self._output(route))

    def _output(self, route: Route) -> dict[str, Any]:
        # Re-read through the selector: the response shows the stops as stored, in order.
        return self.OutputSerializer(selectors.route_list().get(pk=route.pk)).data
