"""Routing's REST API: route creation with its event, the bad-input table, filters, permissions, schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import override_settings
from rest_framework.pagination import PageNumberPagination
from rest_framework.test import APIClient

from apps.contracts import RouteCalculated
from apps.contracts.routing import MAX_STOPS
from apps.outbox.models import OutboxEvent
from apps.routing.models import Customer, Depot, Route, RouteStop, Truck
from tests.routing.factories import CustomerFactory, DepotFactory, TruckFactory, calculated_route, slow_truck_down

ROUTES = "/api/v1/routes/"
STOPS = [
    {"name": "Ankara", "lat": 39.9334, "lon": 32.8597},
    {"name": "Bursa", "lat": 40.1885, "lon": 29.0610},
    {"name": "Izmit", "lat": 40.7654, "lon": 29.9408},
]


def _route_body(**overrides: Any) -> dict[str, Any]:
    body = {"truck": TruckFactory().pk, "customer": CustomerFactory().pk, "stops": STOPS}
    body.update(overrides)
    return body


def _nothing_written() -> bool:
    return not Route.objects.exists() and not RouteStop.objects.exists() and not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_create_returns_201_with_the_plan_and_writes_exactly_one_route_calculated(dispatcher_api: APIClient) -> None:
    response = dispatcher_api.post(ROUTES, _route_body(departs_at="2026-11-26T06:00:00Z"), format="json")
    assert response.status_code == 201, response.data
    body = response.json()
    route = Route.objects.get()
    assert body["id"] == route.pk
    assert [stop["sequence"] for stop in body["stops"]] == [1, 2, 3]
    assert {stop["name"] for stop in body["stops"]} == {"Ankara", "Bursa", "Izmit"}
    assert Decimal(body["distance_km"]) == route.distance_km > 0
    assert body["duration_minutes"] == route.duration_minutes > 0
    assert body["eta"] == route.eta.isoformat().replace("+00:00", "Z")
    assert (body["status"], body["invoiced"], body["calculation"]) == ("calculated", False, 1)
    (row,) = OutboxEvent.objects.all()
    event = RouteCalculated.model_validate_json(row.payload)
    assert (row.event_type, row.key, event.route_id) == (RouteCalculated.ce_type(), f"truck:{body['truck']}", route.pk)


@pytest.mark.django_db(transaction=True)
def test_route_and_its_event_commit_in_the_same_transaction(dispatcher_api: APIClient) -> None:
    assert dispatcher_api.post(ROUTES, _route_body(), format="json").status_code == 201
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM routing_route")
        route_xid = cursor.fetchone()[0]
        cursor.execute("SELECT xmin::text FROM routing_routestop")
        stop_xids = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT xmin::text FROM outbox_outboxevent")
        event_xids = [row[0] for row in cursor.fetchall()]
    assert event_xids == [route_xid] and stop_xids == {route_xid}


@pytest.mark.django_db(transaction=True)
def test_database_failure_during_create_answers_500_and_writes_nothing(
    dispatcher_api: APIClient, failing_outbox_insert: None
) -> None:
    dispatcher_api.raise_request_exception = False
    response = dispatcher_api.post(ROUTES, _route_body(), format="json")
    assert response.status_code == 500
    assert _nothing_written()


BAD_INPUT = {
    "unknown truck": (lambda: _route_body(truck=999_999), "truck"),
    "inactive truck": (lambda: _route_body(truck=TruckFactory(active=False).pk), "truck"),
    "truck not an id": (lambda: _route_body(truck="TRUCK-1"), "truck"),
    "unknown customer": (lambda: _route_body(customer=999_999), "customer"),
    "no stops": (lambda: _route_body(stops=[]), "stops"),
    "stops missing": (lambda: {k: v for k, v in _route_body().items() if k != "stops"}, "stops"),
    "stops not a list": (lambda: _route_body(stops="Ankara"), "stops"),
    "latitude above 90": (lambda: _route_body(stops=[{"name": "X", "lat": 90.0001, "lon": 0}]), "lat"),
    "latitude below -90": (lambda: _route_body(stops=[{"name": "X", "lat": -91, "lon": 0}]), "lat"),
    "longitude above 180": (lambda: _route_body(stops=[{"name": "X", "lat": 0, "lon": 180.5}]), "lon"),
    "longitude below -180": (lambda: _route_body(stops=[{"name": "X", "lat": 0, "lon": -181}]), "lon"),
    "latitude not a number": (lambda: _route_body(stops=[{"name": "X", "lat": "north", "lon": 0}]), "lat"),
    "latitude NaN as text": (lambda: _route_body(stops=[{"name": "X", "lat": "NaN", "lon": 0}]), "lat"),
    "stop without name": (lambda: _route_body(stops=[{"lat": 40, "lon": 29}]), "name"),
    "more stops than the maximum (3)": (
        lambda: _route_body(stops=[{"name": f"S{i}", "lat": 40, "lon": 29 + i / 10} for i in range(4)]),
        "stops",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
@override_settings(ROUTING_MAX_STOPS=3)
def test_bad_input_answers_400_naming_the_field_and_writes_nothing(dispatcher_api: APIClient, case: str) -> None:
    make_body, field = BAD_INPUT[case]
    response = dispatcher_api.post(ROUTES, make_body(), format="json")
    assert response.status_code == 400
    assert field in json.dumps(response.json()), response.json()
    assert _nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    ['{"truck": 1, "stops": [', "NaN", '{"truck": 1, "customer": 1, "stops": [{"name": "X", "lat": NaN, "lon": 0}]}'],
)
def test_malformed_json_answers_400_and_writes_nothing(dispatcher_api: APIClient, payload: str) -> None:
    response = dispatcher_api.post(ROUTES, payload, content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert _nothing_written()


@pytest.mark.django_db
def test_recalculate_endpoint_publishes_the_next_calculation(dispatcher_api: APIClient) -> None:
    route = calculated_route()
    slow_truck_down(route)
    response = dispatcher_api.post(f"{ROUTES}{route.pk}/recalculate/")
    assert response.status_code == 200
    assert response.json()["calculation"] == 2
    assert response.json()["recalculated"] is True
    payloads = [RouteCalculated.model_validate_json(row.payload) for row in OutboxEvent.objects.order_by("id")]
    assert [(p.route_id, p.calculation) for p in payloads] == [(route.pk, 1), (route.pk, 2)]


@pytest.mark.django_db
def test_recalculating_a_cancelled_route_answers_400(dispatcher_api: APIClient) -> None:
    route = calculated_route()
    Route.objects.filter(pk=route.pk).update(status=Route.Status.CANCELLED)
    response = dispatcher_api.post(f"{ROUTES}{route.pk}/recalculate/")
    assert response.status_code == 400 and "status" in response.json()


@pytest.mark.django_db
def test_dispatch_then_complete_moves_the_route_and_publishes_nothing(dispatcher_api: APIClient) -> None:
    route = calculated_route()
    dispatched = dispatcher_api.post(f"{ROUTES}{route.pk}/dispatch/")
    assert dispatched.status_code == 200, dispatched.json()
    assert dispatched.json()["status"] == "dispatched" and dispatched.json()["status_changed_at"]
    completed = dispatcher_api.post(f"{ROUTES}{route.pk}/complete/")
    assert (completed.status_code, completed.json()["status"]) == (200, "completed")
    assert OutboxEvent.objects.count() == 1


@pytest.mark.django_db
def test_cancel_keeps_the_reason_and_needs_one(dispatcher_api: APIClient) -> None:
    route = calculated_route()
    missing = dispatcher_api.post(f"{ROUTES}{route.pk}/cancel/", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()
    cancelled = dispatcher_api.post(f"{ROUTES}{route.pk}/cancel/", {"reason": "customer closed"}, format="json")
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["cancel_reason"]) == ("cancelled", "customer closed")


TARGET = {"dispatch": "dispatched", "complete": "completed", "cancel": "cancelled"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "action", "body"),
    [
        ("calculated", "complete", None),
        ("completed", "dispatch", None),
        ("completed", "cancel", {"reason": "x"}),
        ("cancelled", "dispatch", None),
        ("dispatched", "dispatch", None),
    ],
)
def test_refused_transition_answers_400_naming_status_and_changes_nothing(
    dispatcher_api: APIClient, status: str, action: str, body: dict[str, str] | None
) -> None:
    route = calculated_route()
    Route.objects.filter(pk=route.pk).update(status=status)
    response = dispatcher_api.post(f"{ROUTES}{route.pk}/{action}/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"status": [f"a {status} route cannot be {TARGET[action]}"]}
    route.refresh_from_db()
    assert (route.status, route.status_changed_at) == (status, None)


@pytest.mark.django_db
def test_lifecycle_of_an_unknown_route_answers_404(dispatcher_api: APIClient) -> None:
    assert dispatcher_api.post(f"{ROUTES}999999/dispatch/").status_code == 404


@pytest.mark.django_db
def test_list_filters_by_truck_customer_status_and_date_and_paginates(dispatcher_api: APIClient) -> None:
    truck, customer = TruckFactory(), CustomerFactory()
    mine = calculated_route(truck=truck, customer=customer, departs_at=datetime(2026, 11, 26, 6, tzinfo=UTC))
    other_day = calculated_route(truck=truck, departs_at=datetime(2026, 11, 27, 6, tzinfo=UTC))
    calculated_route()
    Route.objects.filter(pk=other_day.pk).update(status=Route.Status.DISPATCHED)

    def ids(**params: Any) -> list[int]:
        response = dispatcher_api.get(ROUTES, params)
        assert response.status_code == 200, response.data
        return sorted(route["id"] for route in response.json()["results"])

    assert ids(truck=truck.pk) == sorted([mine.pk, other_day.pk])
    assert ids(customer=customer.pk) == [mine.pk]
    assert ids(status="dispatched") == [other_day.pk]
    assert ids(date="2026-11-26", truck=truck.pk) == [mine.pk]
    page = dispatcher_api.get(ROUTES).json()
    assert page["count"] == 3 and len(page["results"]) == 3 and page["next"] is None
    assert dispatcher_api.get(ROUTES, {"status": "lost"}).status_code == 400


@pytest.mark.django_db
def test_list_is_paginated(dispatcher_api: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF reads PAGE_SIZE into the paginator class at import, so a smaller page is set on the class.
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    for _ in range(3):
        calculated_route()
    first = dispatcher_api.get(ROUTES).json()
    assert first["count"] == 3 and len(first["results"]) == 2 and first["next"]
    assert len(dispatcher_api.get(first["next"]).json()["results"]) == 1


@pytest.mark.django_db
def test_detail_shows_stops_in_visiting_order(dispatcher_api: APIClient) -> None:
    route = calculated_route()
    body = dispatcher_api.get(f"{ROUTES}{route.pk}/").json()
    assert [stop["name"] for stop in body["stops"]] == list(route.stops.values_list("name", flat=True))
    assert dispatcher_api.get(f"{ROUTES}999999/").status_code == 404


# --- Permissions ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [("get", ROUTES), ("post", ROUTES), ("get", "/api/v1/trucks/"), ("post", "/api/v1/routes/1/recalculate/")],
)
def test_anonymous_requests_are_401(method: str, path: str) -> None:
    response = getattr(APIClient(), method)(path, {}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_finance_user_cannot_create_routes_or_read_them(finance_api: APIClient) -> None:
    assert finance_api.post(ROUTES, _route_body(), format="json").status_code == 403
    assert finance_api.get(ROUTES).status_code == 403
    assert finance_api.post("/api/v1/trucks/", {}, format="json").status_code == 403
    assert finance_api.post(f"{ROUTES}{calculated_route().pk}/recalculate/").status_code == 403
    assert Route.objects.count() == 1 and OutboxEvent.objects.count() == 1


LIFECYCLE_ACTIONS = [("dispatch", None), ("complete", None), ("cancel", {"reason": "customer closed"})]


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "body"), LIFECYCLE_ACTIONS)
def test_lifecycle_endpoints_answer_anonymous_401_finance_403_dispatcher_200(
    finance_api: APIClient, dispatcher_api: APIClient, action: str, body: dict[str, str] | None
) -> None:
    route = calculated_route()
    if action == "complete":
        Route.objects.filter(pk=route.pk).update(status=Route.Status.DISPATCHED)
    url = f"{ROUTES}{route.pk}/{action}/"
    assert APIClient().post(url, body, format="json").status_code == 401
    assert finance_api.post(url, body, format="json").status_code == 403
    assert Route.objects.get(pk=route.pk).status_changed_at is None, "refused requests change nothing"
    assert dispatcher_api.post(url, body, format="json").status_code == 200


@pytest.mark.django_db
def test_dispatcher_can_create_routes(dispatcher_api: APIClient) -> None:
    assert dispatcher_api.post(ROUTES, _route_body(), format="json").status_code == 201


@pytest.mark.django_db
def test_token_from_the_auth_endpoint_and_a_session_both_authenticate(dispatcher: User) -> None:
    response = APIClient().post("/api/v1/auth/token/", {"username": "dispatcher", "password": "pw"}, format="json")
    assert response.status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get(ROUTES).status_code == 200
    session = APIClient()
    session.force_login(dispatcher)
    assert session.get(ROUTES).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_need_a_logged_in_user(path: str, dispatcher_api: APIClient) -> None:
    assert APIClient().get(path).status_code == 401
    response = dispatcher_api.get(path)
    assert response.status_code == 200
    if path == "/api/schema/":
        assert b"/api/v1/routes/{id}/recalculate/" in response.content


@pytest.mark.django_db
def test_swagger_ui_loads_its_files_from_this_server_under_a_content_security_policy(
    dispatcher_api: APIClient,
) -> None:
    response = dispatcher_api.get("/api/docs/")
    page = response.content.decode()
    assert "cdn.jsdelivr.net" not in page and "/static/drf_spectacular_sidecar/" in page
    assert "<script>" not in page, "inline scripts would need 'unsafe-inline'"
    assert "script-src 'self'" in response["Content-Security-Policy"]


# --- Reference data --------------------------------------------------------------


@pytest.mark.django_db
def test_dispatcher_creates_lists_and_updates_depots_trucks_and_customers(dispatcher_api: APIClient) -> None:
    depot = dispatcher_api.post("/api/v1/depots/", {"name": "Izmir Hub", "lat": 38.42, "lon": 27.14}, format="json")
    assert depot.status_code == 201, depot.data
    truck = dispatcher_api.post(
        "/api/v1/trucks/",
        {"plate": "35 LF 001", "depot": depot.json()["id"], "capacity_kg": 8000, "average_speed_kmh": 70},
        format="json",
    )
    assert truck.status_code == 201, truck.data
    customer = dispatcher_api.post(
        "/api/v1/customers/", {"name": "Ege Foods", "email": "ap@ege.example"}, format="json"
    )
    assert customer.status_code == 201
    retired = dispatcher_api.patch(f"/api/v1/trucks/{truck.json()['id']}/", {"active": False}, format="json")
    assert retired.status_code == 200 and retired.json()["active"] is False
    assert Truck.objects.get().active is False
    assert dispatcher_api.get("/api/v1/trucks/", {"active": "false"}).json()["count"] == 1
    renamed = dispatcher_api.put(
        f"/api/v1/customers/{customer.json()['id']}/", {"name": "Ege Foods A.S."}, format="json"
    )
    assert renamed.status_code == 200 and Customer.objects.get().name == "Ege Foods A.S."
    assert dispatcher_api.get("/api/v1/depots/").json()["results"][0]["name"] == "Izmir Hub"


@pytest.mark.django_db
def test_reference_data_validation_answers_400_and_a_duplicate_409(dispatcher_api: APIClient) -> None:
    depot = DepotFactory()
    bad_depot = dispatcher_api.post("/api/v1/depots/", {"name": "Pole", "lat": 95, "lon": 0}, format="json")
    assert bad_depot.status_code == 400 and "lat" in bad_depot.json()
    TruckFactory(plate="34 LF 999")
    duplicate = dispatcher_api.post(
        "/api/v1/trucks/",
        {"plate": "34 LF 999", "depot": depot.pk, "capacity_kg": 1, "average_speed_kmh": 60},
        format="json",
    )
    assert duplicate.status_code == 409 and "plate" in duplicate.json()
    assert Depot.objects.count() == 1 + 1 and Truck.objects.count() == 1


@pytest.mark.django_db
def test_recalculating_an_unchanged_route_says_so_and_burns_nothing(dispatcher_api: APIClient) -> None:
    route = calculated_route()
    response = dispatcher_api.post(f"{ROUTES}{route.pk}/recalculate/")
    assert response.status_code == 200
    assert (response.json()["recalculated"], response.json()["calculation"]) == (False, 1)
    assert OutboxEvent.objects.count() == 1


@pytest.mark.django_db
def test_a_route_with_more_stops_than_allowed_is_refused_before_its_stops_are_validated(
    dispatcher_api: APIClient, settings: Any
) -> None:
    settings.ROUTING_MAX_STOPS = 3
    body = _route_body()
    body["stops"] = [{"name": "x", "lat": "not a number", "lon": 0}] * 4
    response = dispatcher_api.post(ROUTES, body, format="json")
    assert response.status_code == 400
    assert "no more than 3" in str(response.json()["stops"])  # the count, not 4 per-stop errors
    assert not Route.objects.exists()


@pytest.mark.django_db
def test_the_api_never_takes_more_stops_than_the_event_contract_carries(
    dispatcher_api: APIClient, settings: Any
) -> None:
    """ROUTING_MAX_STOPS set past RouteCalculated's bound: the API still refuses what the event could not carry
    (else the route is saved and its event refused, or the request fails)."""
    settings.ROUTING_MAX_STOPS = 10_000
    body = _route_body()
    body["stops"] = [{"name": f"stop {n}", "lat": 40 + n / 1000, "lon": 30} for n in range(MAX_STOPS + 1)]
    response = dispatcher_api.post(ROUTES, body, format="json")
    assert response.status_code == 400
    assert f"no more than {MAX_STOPS}" in str(response.json()["stops"])
    assert not Route.objects.exists()


@pytest.mark.django_db
def test_an_oversized_body_is_413_json_and_writes_nothing(dispatcher_api: APIClient, settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 1000
    body = _route_body()
    body["stops"] = [{"name": "n" * 200, "lat": 1, "lon": 1}] * 10
    response = dispatcher_api.post(ROUTES, body, format="json")
    assert response.status_code == 413
    assert "larger than 1000 bytes" in response.json()["detail"]
    assert not Route.objects.exists()


@pytest.mark.parametrize("name", ["\r" + "x" * 200, "x" * 200 + " ", "\t\n" + "x" * 199])
def test_a_name_over_its_documented_length_is_refused_even_when_trimming_would_fit_it(
    dispatcher_api: APIClient, name: str
) -> None:
    # The schema bounds what the client sends (maxLength 200); DRF trims surrounding whitespace before its own check.
    response = dispatcher_api.post("/api/v1/customers/", {"name": name}, format="json")

    assert response.status_code == 400, response.content
    assert "name" in response.json()
    assert not Customer.objects.exists()


@pytest.mark.timeout(60)  # today's code burned minutes of CPU on it before the bound check
def test_an_id_filter_with_a_huge_exponent_answers_400_at_once(dispatcher_api: APIClient) -> None:
    response = dispatcher_api.get("/api/v1/trucks/", {"depot": "1e3000000"})
    assert response.status_code == 400
    assert "depot" in response.json()


def test_an_id_filter_padded_past_any_bigint_answers_400_not_a_match(dispatcher_api: APIClient) -> None:
    response = dispatcher_api.get("/api/v1/routes/", {"truck": "0" * 40 + "7"})
    assert response.status_code == 400
    assert "truck" in response.json()
@pytest.mark.django_db
def test_a_route_created_with_stop_order_as_given_keeps_the_order_it_was_sent_in(dispatcher_api: APIClient) -> None:
    response = dispatcher_api.post(ROUTES, _route_body(stop_order="as_given"), format="json")
    assert response.status_code == 201, response.data
    assert [stop["name"] for stop in response.json()["stops"]] == ["Ankara", "Bursa", "Izmit"]
    assert response.json()["stop_order"] == "as_given"


@pytest.mark.django_db
def test_without_stop_order_the_api_optimises_as_it_always_did(dispatcher_api: APIClient) -> None:
    response = dispatcher_api.post(ROUTES, _route_body(), format="json")
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["stop_order"] == "optimised"
    assert [stop["name"] for stop in body["stops"]] == ["Bursa", "Izmit", "Ankara"]  # the shortest tour from Istanbul
    assert [stop["given_position"] for stop in body["stops"]] == [2, 3, 1]


@pytest.mark.django_db
def test_the_schema_documents_stop_order_and_its_default(dispatcher_api: APIClient) -> None:
    schema = dispatcher_api.get("/api/schema/?format=json").json()
    field = schema["components"]["schemas"]["RouteInputRequest"]["properties"]["stop_order"]
    assert field["default"] == "optimised"
    assert schema["components"]["schemas"]["StopOrderEnum"]["enum"] == ["as_given", "optimised"]


@pytest.mark.django_db
@pytest.mark.parametrize("departs_at", ["2026-11-26T06:00:00", "2026-11-26 06:00"])
def test_a_departure_without_a_time_zone_is_refused_naming_the_field(
    dispatcher_api: APIClient, departs_at: str
) -> None:
    response = dispatcher_api.post(ROUTES, _route_body(departs_at=departs_at), format="json")
    assert response.status_code == 400
    assert "time zone" in response.json()["departs_at"][0]
    assert _nothing_written()


@pytest.mark.django_db
def test_a_departure_with_an_offset_is_taken_as_that_moment(dispatcher_api: APIClient) -> None:
    response = dispatcher_api.post(ROUTES, _route_body(departs_at="2026-11-26T09:00:00+03:00"), format="json")
    assert response.status_code == 201, response.data
    assert Route.objects.get().departs_at == datetime(2026, 11, 26, 6, tzinfo=UTC)
