"""The REST API as LogiFlow's users drive it: the dispatcher and finance set up depots, trucks, customers and
billing accounts, then several concurrent clients create and recalculate routes until the deadline.

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


@dataclass(frozen=True)
class Fleet:
    trucks: list[int]
    customers: list[int]


def set_up_fleet(base_url: str, rng: random.Random, *, depots: int = 2, trucks: int = 8, customers: int = 6) -> Fleet:
    """Reference data through the API as the demo users: every customer gets a billing account, so every
    route must end up with exactly one invoice in force."""
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
        for n in range(1, customers + 1)
    ]
    for customer_id in customer_ids:
        finance.must("POST", "/api/v1/billing-accounts/", {
            "customer_id": customer_id, "name": f"Chaos customer {customer_id}", "billing_address": "1 Test Street",
            "rate_per_km": "1.2500", "fee_per_stop": "15.00", "vat_rate_percent": "20.00",
        })
    return Fleet(trucks=truck_ids, customers=customer_ids)


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

    def start(self, deadline: float) -> None:
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(number, deadline), name=f"chaos-client-{number}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

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
        truck = rng.choice(self.fleet.trucks)
        stops = [{"name": f"Stop {n}", **_point(rng)} for n in range(1, rng.randint(2, 6) + 1)]
        status, answer = api.request(
            "POST", "/api/v1/routes/", {"truck": truck, "customer": rng.choice(self.fleet.customers), "stops": stops}
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
