"""The REST API as LogiFlow's users drive it: the dispatcher and finance set up depots, trucks, customers and
billing accounts, then several concurrent clients create and recalculate routes until the deadline, while a desk
renames customers, adds a truck and a customer of the same number, and opens late billing accounts. Customer n and
truck n coexist on purpose: a dead letter for a route on truck n must not hold customer n's changes.

Client-side counts are informational only: a request cut by a fault may have committed or not, so the checks
count routes in the database, never 201s.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("chaos")
REQUEST_TIMEOUT_S = 30
SET_UP_ATTEMPTS = 20
DEMO_PASSWORD = "logiflow-demo"  # create_demo_users
RECALCULATE_SHARE = 0.25
LATE_PAYERS = 2  # customers of the set-up whose billing account is opened only during the run
ACCOUNT_GAP_S = 20.0  # a customer is without a billing account at least this long (its routes dead-letter meanwhile)
NEW_PAIRS = 4  # the desk adds at most this many (truck n, customer n) pairs during the run
DESK_PAUSE_S = (2.0, 6.0)
MISSING_ACCOUNT = "MissingBillingData"  # the exception class of a route whose customer has no billing account
# Stops somewhere in Anatolia, as the seed's story goes.
AREA = {"lat": (37.0, 41.5), "lon": (27.0, 40.0)}


class Api:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, decoded body); status 0 when no answer came (refused, reset, timed out)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                return response.status, _decoded(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _decoded(error.read())
        except (OSError, ValueError) as error:  # URLError, resets and timeouts are OSErrors
            return 0, str(error)

    def must(self, method: str, path: str, body: Any = None) -> Any:
        """For the set-up, before any fault: retried a bounded number of times until it answers 2xx."""
        for attempt in range(SET_UP_ATTEMPTS):
            status, answer = self.request(method, path, body)
            if 200 <= status < 300:
                return answer
            time.sleep(min(5.0, 0.5 * (attempt + 1)))
        raise RuntimeError(f"{method} {path} kept failing; last answer {status}: {str(answer)[:300]}")


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw[:300].decode("utf-8", errors="replace")


def login(base_url: str, username: str) -> Api:
    answer = Api(base_url).must("POST", "/api/v1/auth/token/", {"username": username, "password": DEMO_PASSWORD})
    return Api(base_url, answer["token"])


def wait_until_serving(base_url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Api(base_url).request("GET", "/healthz")[0] == 200:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the web server did not answer /healthz within {timeout}s")


@dataclass
class Fleet:
    depots: list[int]
    trucks: list[int]
    customers: list[int]
    without_account: list[int]  # customers whose billing account is still to be opened


def set_up_fleet(base_url: str, rng: random.Random, *, depots: int = 2, trucks: int = 8) -> Fleet:
    """Reference data through the API as the demo users: as many customers as trucks, so customer n and truck n
    both exist; every customer but LATE_PAYERS of them gets a billing account now, those during the run (and at
    the latest by `settle`), so every route must end up with exactly one invoice in force."""
    dispatcher, finance = login(base_url, "dispatcher"), login(base_url, "finance")
    depot_ids = [
        dispatcher.must("POST", "/api/v1/depots/", {"name": f"Chaos depot {n}", **_point(rng)})["id"]
        for n in range(1, depots + 1)
    ]
    truck_ids = [
        dispatcher.must("POST", "/api/v1/trucks/", {
            "plate": f"34 CH {n:03d}", "depot": depot_ids[n % depots], "capacity_kg": 12000,
            "average_speed_kmh": rng.randint(60, 90),
        })["id"]
        for n in range(1, trucks + 1)
    ]
    customer_ids = [
        dispatcher.must("POST", "/api/v1/customers/", {"name": f"Chaos customer {n}"})["id"]
        for n in range(1, trucks + 1)
    ]
    if set(customer_ids) != set(truck_ids):
        logger.warning("customer numbers %s differ from truck numbers %s", customer_ids, truck_ids)
    late = rng.sample(customer_ids, LATE_PAYERS)
    for customer_id in customer_ids:
        if customer_id not in late:
            finance.must("POST", "/api/v1/billing-accounts/", _account(customer_id))
    return Fleet(depots=depot_ids, trucks=truck_ids, customers=customer_ids, without_account=late)


def _account(customer_id: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id, "name": f"Chaos customer {customer_id}", "billing_address": "1 Test Street",
        "rate_per_km": "1.2500", "fee_per_stop": "15.00", "vat_rate_percent": "20.00",
    }


def _point(rng: random.Random) -> dict[str, float]:
    return {"lat": round(rng.uniform(*AREA["lat"]), 5), "lon": round(rng.uniform(*AREA["lon"]), 5)}


@dataclass
class Traffic:
    """Concurrent dispatcher clients: route creations, and recalculations of routes created earlier."""

    base_url: str
    fleet: Fleet
    seed: int
    clients: int
    think_seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    routes: list[tuple[int, int]] = field(default_factory=list)  # (route, its truck)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _since: dict[int, float] = field(default_factory=dict)  # customer without an account -> since when

    def start(self, deadline: float) -> None:
        self._since = dict.fromkeys(self.fleet.without_account, time.monotonic())
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(number, deadline), name=f"chaos-client-{number}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        desk = threading.Thread(target=self._desk, args=(deadline,), name="chaos-desk", daemon=True)
        desk.start()
        self._threads.append(desk)

    def join(self, *, timeout: float) -> None:
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    def _client(self, number: int, deadline: float) -> None:
        rng = random.Random(f"{self.seed}-client-{number}")
        try:
            api = login(self.base_url, "dispatcher")
        except RuntimeError:
            logger.exception("client %d could not log in; it sends nothing", number)
            return
        while time.monotonic() < deadline:
            with self._lock:
                known = rng.choice(self.routes) if self.routes and rng.random() < RECALCULATE_SHARE else None
            outcome = self._create(api, rng) if known is None else self._recalculate(api, rng, *known)
            with self._lock:
                self.outcomes[outcome] += 1
            time.sleep(min(max(0.0, deadline - time.monotonic()), rng.uniform(0, 2 * self.think_seconds)))

    def _create(self, api: Api, rng: random.Random) -> str:
        with self._lock:
            truck, customer = rng.choice(self.fleet.trucks), rng.choice(self.fleet.customers)
        stops = [{"name": f"Stop {n}", **_point(rng)} for n in range(1, rng.randint(2, 6) + 1)]
        status, answer = api.request(
            "POST", "/api/v1/routes/", {"truck": truck, "customer": customer, "stops": stops}
        )
        if status == 201:
            with self._lock:
                self.routes.append((answer["id"], truck))
        return f"create:{status}"

    def _recalculate(self, api: Api, rng: random.Random, route: int, truck: int) -> str:
        """Re-plan after the truck's speed changed (an unchanged plan is not recalculated at all)."""
        status, _ = api.request("PATCH", f"/api/v1/trucks/{truck}/", {"average_speed_kmh": rng.randint(50, 110)})
        if status != 200:
            return f"truck_speed:{status}"
        status, answer = api.request("POST", f"/api/v1/routes/{route}/recalculate/")
        changed = status == 200 and isinstance(answer, dict) and answer.get("recalculated") is not False
        return f"recalculate:{status}" + ("" if status != 200 or changed else ":unchanged")

    # --- the desk: customers change, arrive, and get their billing accounts late -----------------------------

    def _desk(self, deadline: float) -> None:
        rng = random.Random(f"{self.seed}-desk")
        try:
            dispatcher, finance = login(self.base_url, "dispatcher"), login(self.base_url, "finance")
        except RuntimeError:
            logger.exception("the desk could not log in; no customer changes")
            return
        added = 0
        while time.monotonic() < deadline:
            with self._lock:
                due = sorted(c for c, since in self._since.items() if time.monotonic() - since >= ACCOUNT_GAP_S)
            draw = rng.random()
            if due and draw < 0.3:
                outcome = self._open_account(finance, rng.choice(due))
            elif draw < 0.45 and added < NEW_PAIRS:
                added += 1
                outcome = self._new_pair(dispatcher, rng)
            else:
                outcome = self._rename(dispatcher, rng)
            with self._lock:
                self.outcomes[outcome] += 1
            time.sleep(min(max(0.0, deadline - time.monotonic()), rng.uniform(*DESK_PAUSE_S)))

    def _rename(self, api: Api, rng: random.Random) -> str:
        with self._lock:
            customer = rng.choice(self.fleet.customers)
        name = f"Chaos customer {customer} ({rng.randrange(10_000)})"
        return f"rename_customer:{api.request('PATCH', f'/api/v1/customers/{customer}/', {'name': name})[0]}"

    def _new_pair(self, api: Api, rng: random.Random) -> str:
        """A truck and a customer created one after the other, so they get the same number; the customer's
        billing account comes ACCOUNT_GAP_S later at the earliest."""
        status, truck = api.request("POST", "/api/v1/trucks/", {
            "plate": f"34 CN {rng.randrange(1000):03d}", "depot": rng.choice(self.fleet.depots),
            "capacity_kg": 12000, "average_speed_kmh": rng.randint(60, 90),
        })
        if status != 201:
            return f"new_truck:{status}"
        status, customer = api.request("POST", "/api/v1/customers/", {"name": f"Chaos customer n{truck['id']}"})
        if status != 201:
            return f"new_customer:{status}"
        with self._lock:
            self.fleet.trucks.append(truck["id"])
            self.fleet.customers.append(customer["id"])
            self.fleet.without_account.append(customer["id"])
            self._since[customer["id"]] = time.monotonic()
        return "new_pair:201" + ("" if truck["id"] == customer["id"] else ":numbers_differ")

    def _open_account(self, api: Api, customer: int) -> str:
        """Finance opens the account; refused (400) while the customer has not reached invoicing's directory."""
        status, _ = api.request("POST", "/api/v1/billing-accounts/", _account(customer))
        if status == 201 or (status == 400 and _has_account(api, customer)):
            with self._lock:
                self._since.pop(customer, None)
                self.fleet.without_account.remove(customer)
        return f"open_account:{status}"



def _has_account(api: Api, customer: int) -> bool:
    """A 400 may mean "already has one" (an earlier request cut by a fault after it committed)."""
    return api.request("GET", f"/api/v1/billing-accounts/{customer}/")[0] == 200


def settle(base_url: str, fleet: Fleet) -> Counter[str]:
    """What finance and operations do once the faults are over: open every billing account still missing, then
    replay each dead letter of a route whose customer had none (the heads; their parked messages follow).
    Returns the outcomes, `action:status`; call it again after the stack went quiet if anything was refused."""
    finance, operations = login(base_url, "finance"), login(base_url, "operations")
    outcomes: Counter[str] = Counter()
    for customer in list(fleet.without_account):
        status, _ = finance.request("POST", "/api/v1/billing-accounts/", _account(customer))
        outcomes[f"open_account:{status}"] += 1
        if status == 201 or _has_account(finance, customer):
            fleet.without_account.remove(customer)
    # Not by `type`: a dead letter's type is the ce_type as received, with its version (`….RouteCalculated.v1`).
    page: str | None = "/api/v1/dead-letters/?status=pending&group=invoicing&reason=non_retryable"
    heads = []
    while page:
        answer = operations.must("GET", page)
        heads += [row["id"] for row in answer["results"]
                  if row["blocked_by"] is None and row["exception_class"].endswith(MISSING_ACCOUNT)]
        page = answer["next"] and answer["next"].removeprefix(base_url)
    for dead_letter in heads:
        status, answer = operations.request("POST", f"/api/v1/dead-letters/{dead_letter}/replay/")
        outcome = answer.get("outcome", "") if isinstance(answer, dict) else ""
        outcomes[f"replay:{status}" + (f":{outcome}" if outcome else "")] += 1
    return outcomes
