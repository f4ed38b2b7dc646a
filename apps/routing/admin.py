"""The dispatchers' admin: reference data saved through services; routes planned on an add form that calls
`route_calculate`, then read-only, changed by actions (recalculate, dispatch, complete, cancel) that call the
services."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.common.admin import ReadOnlyAdminMixin
from apps.common.converters import parse_id
from apps.common.errors import ApplicationError
from apps.common.timezones import list_time, local_time, reader_zone_name
from apps.consumers import selectors as ledger
from apps.contracts import RouteCalculated
from apps.routing import selectors, services
from apps.routing.models import Customer, Depot, Route, RouteStop, Truck


def _route_of(letter: Any) -> int | None:
    """The route a dead letter's RouteCalculated is about, read from its stored message (None when unreadable)."""
    try:
        route_id = json.loads(bytes(letter.value)).get("route_id")
    except (ValueError, AttributeError):
        return None
    return route_id if isinstance(route_id, int) else None


class ServiceSaveMixin:
    """Admin saves go through the create/update services, like the API's."""

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        data = dict(form.cleaned_data)
        if change:
            self.update_object(obj.__class__.objects.get(pk=obj.pk), data)
        else:
            # The admin logs and redirects using `obj`, so it takes the created row's id.
            obj.pk = self.create_object(**data).pk

    def create_object(self, **data: Any) -> Any:
        raise NotImplementedError

    def update_object(self, instance: Any, data: dict[str, Any]) -> Any:
        raise NotImplementedError


@admin.register(Depot)
class DepotAdmin(ServiceSaveMixin, admin.ModelAdmin):
    list_display = ["name", "address", "lat", "lon"]
    search_fields = ["name", "address"]

    def create_object(self, **data: Any) -> Depot:
        return services.depot_create(**data)

    def update_object(self, instance: Depot, data: dict[str, Any]) -> Depot:
        return services.depot_update(depot=instance, data=data)


@admin.register(Truck)
class TruckAdmin(ServiceSaveMixin, admin.ModelAdmin):
    list_display = ["plate", "depot", "capacity_kg", "average_speed_kmh", "active"]
    list_filter = ["active", "depot"]
    search_fields = ["plate"]
    list_select_related = ["depot"]

    def create_object(self, **data: Any) -> Truck:
        return services.truck_create(**data)

    def update_object(self, instance: Truck, data: dict[str, Any]) -> Truck:
        return services.truck_update(truck=instance, data=data)


@admin.register(Customer)
class CustomerAdmin(ServiceSaveMixin, admin.ModelAdmin):
    list_display = ["name", "email", "phone"]
    search_fields = ["name", "email"]

    def create_object(self, **data: Any) -> Customer:
        return services.customer_create(**data)

    def update_object(self, instance: Customer, data: dict[str, Any]) -> Customer:
        return services.customer_update(customer=instance, data=data)


class RouteStopInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Stops in visiting order; written only by route calculation."""

    model = RouteStop
    ordering = ["sequence"]
    fields = ["sequence", "name", "lat", "lon", "leg_distance_km", "planned_arrival"]
    readonly_fields = fields
    extra = 0
    can_delete = False


class RouteAddForm(forms.Form):
    truck = forms.ModelChoiceField(queryset=Truck.objects.select_related("depot"))
    customer = forms.ModelChoiceField(queryset=Customer.objects.all())
    departs_at = forms.SplitDateTimeField(required=False, widget=widgets.AdminSplitDateTime)
    stop_order = forms.ChoiceField(
        choices=Route.StopOrder.choices, initial=Route.StopOrder.AS_GIVEN, widget=forms.RadioSelect,
        help_text="Keep the order of the rows below, or let planning find the shortest tour (the route's page then "
                  "shows your order beside it, with the distance saved).",
    )


    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["departs_at"].help_text = (
            f"In {reader_zone_name()} time; empty: now. The tour starts at the truck's depot."
        )


class StopForm(forms.Form):
    name = forms.CharField(max_length=RouteStop._meta.get_field("name").max_length)
    lat = forms.FloatField(label="latitude", min_value=-90, max_value=90)
    lon = forms.FloatField(label="longitude", min_value=-180, max_value=180)


def stop_formset(data: Any = None) -> forms.BaseFormSet:
    """The add form's stop rows: a few to start with, more added in the browser ("Add a stop") up to the most a
    route may have (read per request). ORDER is the order the dispatcher lists the stops in: kept, or the start of
    the optimisation (`stop_order`)."""
    most = settings.ROUTING_MAX_STOPS
    formset = forms.formset_factory(
        StopForm, extra=min(5, most), can_order=True, max_num=most, absolute_max=most, validate_max=True,
    )
    return formset(data, prefix="stops")


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    """Routes are planned on the add form through `route_calculate` and changed only by the services behind the
    actions, so a route's own page is read-only."""

    # Fits 1,280 px beside both sidebars: plates whole, times as date over time (zone named), the customer wraps.
    list_display = [
        "id", "truck", "customer", "status", "departs", "distance_km", "arrives", "calculation_short",
        "invoiced_display",
    ]
    list_filter = ["status", "truck", "departs_at"]
    search_fields = ["truck__plate", "customer__name"]
    date_hierarchy = "departs_at"
    list_select_related = ["truck", "customer"]
    inlines = [RouteStopInline]
    actions = ["recalculate_routes", "dispatch_routes", "complete_routes", "cancel_routes"]
    fields = [
        "truck", "customer", "depot", "status", "status_changed_at", "cancel_reason", "calculation", "departs_at",
        "stop_order", "stop_orders", "distance_km", "duration_minutes", "eta", "calculated_at", "invoice_number",
        "invoiced_at", "events",
    ]
    readonly_fields = fields

    def has_change_permission(self, request: HttpRequest, obj: Route | None = None) -> bool:
        # Without an object this gates the route actions; a route's own page stays view-only.
        return obj is None and super().has_change_permission(request)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        route_id = parse_id(search_term.strip())
        if route_id is not None:
            results |= queryset.filter(pk=route_id)
        return results, may_have_duplicates

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Plan a route: the form collects the service's input, `route_calculate` validates, plans and publishes."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else None
        form, stops = RouteAddForm(data), stop_formset(data)
        stop_errors: list[str] = []
        if data is not None and form.is_valid() and stops.is_valid():
            try:
                route = services.route_calculate(
                    truck=form.cleaned_data["truck"], customer=form.cleaned_data["customer"],
                    departs_at=form.cleaned_data["departs_at"], stops=self._stop_inputs(stops),
                    stop_order=form.cleaned_data["stop_order"],
                )
            except ApplicationError as error:
                if error.field in form.fields:
                    form.add_error(error.field, error.message)
                elif error.field == "stops":
                    stop_errors.append(error.message)
                else:
                    form.add_error(None, error.message)
            else:
                self.log_addition(request, route, [{"added": {}}])
                self.message_user(
                    request,
                    f"Planned {route}: {route.stops.count()} stops, {route.distance_km} km, "
                    f"ETA {local_time(route.eta)}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:routing_route_change", args=[route.pk]))
        return TemplateResponse(request, "admin/routing/route/add_form.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Plan a route",
            "form": form, "stops": stops, "stop_errors": [*stops.non_form_errors(), *stop_errors],
            "media": self.media + form.media, **(extra_context or {}),
        })

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        route = self.get_object(request, object_id)
        extra_context = {**(extra_context or {})}
        if route is not None:
            extra_context["invoicing"] = self._invoicing_state(request, route)
            extra_context["route_map"] = self._map_data(route)
        return super().change_view(request, object_id, form_url, extra_context)

    @staticmethod
    def _map_data(route: Route) -> dict[str, Any]:
        """What route_map.js draws: the depot, the stops in visiting order, and the tiles to draw them on."""
        return {
            "depot": {"name": route.depot.name, "lat": route.depot.lat, "lon": route.depot.lon},
            "stops": [
                {"sequence": stop.sequence, "name": stop.name, "lat": stop.lat, "lon": stop.lon,
                 "arrival": local_time(stop.planned_arrival)}
                for stop in route.stops.order_by("sequence")
            ],
            "tiles": settings.ROUTE_MAP_TILE_URL, "attribution": settings.ROUTE_MAP_TILE_ATTRIBUTION,
        }

    @staticmethod
    def _invoicing_state(request: HttpRequest, route: Route) -> dict[str, Any] | None:
        """What is true of the route's invoicing while it has no invoice, or while a dead letter holds one of its
        calculations: failed (and why), held behind another message's dead letter (which, of which route), or
        simply not done yet (since when). Links to dead letters only for users who may open the ledger."""
        events = list(selectors.route_events(route=route).filter(event_type=RouteCalculated.ce_type()))
        letters = list(ledger.unresolved_for_events([event.event_id for event in events])) if events else []
        may_view = request.user.has_perm("consumers.view_deadletter")

        def link(letter: Any) -> str | None:
            return reverse("admin:consumers_deadletter_change", args=[letter.pk]) if may_view else None

        failed = [(letter, link(letter)) for letter in letters if letter.blocked_by_id is None]
        held = [(letter.blocked_by, link(letter.blocked_by), _route_of(letter.blocked_by))
                for letter in letters if letter.blocked_by_id is not None]
        if failed or held:
            return {"failed": failed, "held": held}
        if route.invoice_number or not events:
            return None
        waiting_since = events[0].created_at
        return {"waiting_since": local_time(waiting_since), "in_outbox": events[-1].published_at is None}

    @staticmethod
    def _stop_inputs(stops: Any) -> list[services.StopInput]:
        """The filled-in stop rows, in the dispatcher's ORDER (rows without one keep their place, after)."""
        return [
            services.StopInput(name=row.cleaned_data["name"], lat=row.cleaned_data["lat"], lon=row.cleaned_data["lon"])
            for row in stops.ordered_forms
        ]

    @admin.display(description="departs at", ordering="departs_at")
    def departs(self, route: Route) -> SafeString | str:
        return list_time(route.departs_at)

    @admin.display(description="ETA", ordering="eta")
    def arrives(self, route: Route) -> SafeString | str:
        return list_time(route.eta)

    @admin.display(description="calc.", ordering="calculation")
    def calculation_short(self, route: Route) -> int:
        return route.calculation

    @admin.display(boolean=True, description="invoiced")
    def invoiced_display(self, route: Route) -> bool:
        return route.invoiced

    @admin.display(description="your order and the optimised one")
    def stop_orders(self, route: Route) -> SafeString | str:
        orders = selectors.route_stop_orders(route=route)
        if orders is None:
            return "—" if route.stop_order == Route.StopOrder.OPTIMISED else "Visited in the dispatcher's order."
        rows = format_html_join(
            "", "<tr><th scope='row'>{}</th><td>{}</td><td>{}</td></tr>",
            ((n, given.name, planned.name) for n, (given, planned) in
             enumerate(zip(orders.given, orders.planned, strict=True), start=1)),
        )
        return format_html(
            '<table class="stop-orders"><thead><tr><th>#</th><th>Your order ({} km)</th>'
            "<th>Optimised order ({} km)</th></tr></thead><tbody>{}</tbody></table>"
            "<p>The optimised order saves {} km.</p>",
            orders.given_km, orders.planned_km, rows, orders.saved_km,
        )

    @admin.display(description="events (outbox)")
    def events(self, route: Route) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class='when'>{}</td><td class='when'>{}</td>"
            "<td>{}</td></tr>",
            (
                (event.id, event.event_type, event.body.get("calculation", "—"), event.state,
                 local_time(event.created_at), local_time(event.published_at), event.last_error or "")
                for event in selectors.route_events(route=route)
            ),
        )
        return format_html(
            # In a box of its own that scrolls sideways when the screen is narrower than the table (a phone).
            "<div class='table-scroll'><table><thead><tr><th>#</th><th>type</th><th>calculation</th><th>state</th>"
            "<th>written</th><th>published</th><th>last error</th></tr></thead><tbody>{}</tbody></table></div>",
            rows or format_html("<tr><td colspan='7'>none</td></tr>"),
        )

    @admin.action(permissions=["change"], description="Recalculate selected routes")
    def recalculate_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        def recalculate(*, route: Route) -> Route:
            route = services.route_recalculate(route=route)
            if not route.recalculated:
                raise ApplicationError("its plan would not change, so nothing was recalculated or published")
            return route

        self._each_route(
            request, queryset, recalculate,
            done="Recalculated {} route(s); each published a new RouteCalculated.", refused="Not recalculated",
        )

    @admin.action(permissions=["change"], description="Dispatch selected routes")
    def dispatch_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        self._each_route(request, queryset, services.route_dispatch, done="Dispatched {} route(s).",
                         refused="Not dispatched")

    @admin.action(permissions=["change"], description="Mark selected routes completed")
    def complete_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        self._each_route(request, queryset, services.route_complete, done="Completed {} route(s).",
                         refused="Not completed")

    @admin.action(permissions=["change"], description="Cancel selected routes")
    def cancel_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        reason = f"cancelled in the admin by {request.user.get_username()}"
        self._each_route(
            request, queryset, lambda *, route: services.route_cancel(route=route, reason=reason),
            done="Cancelled {} route(s).", refused="Not cancelled",
        )

    def _each_route(
        self, request: HttpRequest, queryset: QuerySet[Route], service: Callable[..., Route], *, done: str,
        refused: str,
    ) -> None:
        """Call `service(route=…)` for each selected route and report how many it changed and which it refused."""
        changed, refusals = 0, []
        for route in queryset.order_by("pk"):  # reported in id order
            # One transaction per route: a route the service refuses does not undo the others.
            try:
                service(route=route)
            except ApplicationError as error:
                refusals.append(f"route {route.pk}: {error.message}")
            else:
                changed += 1
        self.message_user(request, done.format(changed))
        if refusals:
            self.message_user(request, f"{refused}: " + "; ".join(refusals), messages.WARNING)
