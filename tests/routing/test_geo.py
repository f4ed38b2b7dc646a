"""Great-circle distances against published figures, and stop ordering against exhaustive search."""

from __future__ import annotations

import itertools
import random

import pytest

from apps.routing.geo import (
    Point,
    distance_matrix,
    haversine_km,
    nearest_neighbour,
    optimal_order,
    order_stops,
    tour_length,
    two_opt,
)

BNA = Point(36.12, -86.67)  # Nashville International Airport
LAX = Point(33.94, -118.40)  # Los Angeles International Airport


def _random_stops(seed: int, count: int) -> tuple[Point, list[Point]]:
    rng = random.Random(seed)
    depot = Point(rng.uniform(38, 42), rng.uniform(27, 33))
    return depot, [Point(rng.uniform(38, 42), rng.uniform(27, 33)) for _ in range(count)]


def _length(depot: Point, stops: list[Point], order: list[int]) -> float:
    return tour_length(distance_matrix([depot, *stops]), [index + 1 for index in order])


@pytest.mark.parametrize(
    ("a", "b", "published_km"),
    [
        # Rosetta Code "Haversine formula" (Wikipedia's great-circle example): 2886.444 km with R = 6371.0 km.
        (BNA, LAX, 2886.444),
        # A quarter of a meridian, equator to pole: π/2 · 6371.0088 km (IUGG mean radius).
        (Point(0, 0), Point(90, 0), 10007.557),
        # One degree of longitude on the equator: 111.195 km.
        (Point(0, 0), Point(0, 1), 111.195),
    ],
)
def test_distance_matches_published_great_circle_distance_within_half_a_percent(
    a: Point, b: Point, published_km: float
) -> None:
    assert haversine_km(a, b) == pytest.approx(published_km, rel=0.005)
    assert haversine_km(b, a) == pytest.approx(haversine_km(a, b))


def test_distance_is_zero_for_the_same_point_and_finite_for_antipodes() -> None:
    assert haversine_km(BNA, BNA) == 0
    assert haversine_km(Point(0, 0), Point(0, 180)) == pytest.approx(20015.114, rel=1e-6)


@pytest.mark.parametrize("seed", range(30))
def test_two_opt_is_never_longer_than_nearest_neighbour(seed: int) -> None:
    depot, stops = _random_stops(seed, count=25)
    matrix = distance_matrix([depot, *stops])
    greedy = nearest_neighbour(matrix)
    assert tour_length(matrix, two_opt(matrix, greedy)) <= tour_length(matrix, greedy) + 1e-9
    # The full ordering (2-opt and or-opt) keeps that guarantee.
    assert _length(depot, stops, order_stops(depot, stops)) <= tour_length(matrix, greedy) + 1e-9


@pytest.mark.parametrize("seed", range(30))
def test_ordering_visits_every_stop_exactly_once(seed: int) -> None:
    depot, stops = _random_stops(seed, count=seed + 1)
    assert sorted(order_stops(depot, stops)) == list(range(len(stops)))


def test_exhaustive_oracle_agrees_with_plain_permutations() -> None:
    depot, stops = _random_stops(7, count=7)
    best = min(itertools.permutations(range(len(stops))), key=lambda order: _length(depot, stops, list(order)))
    assert _length(depot, stops, optimal_order(depot, stops)) == pytest.approx(_length(depot, stops, list(best)))


def test_ten_stops_on_a_line_are_visited_in_the_optimal_order() -> None:
    depot = Point(40.0, 28.0)
    # Shuffled stops due east of the depot: the only optimal tour goes out in order of longitude.
    stops = [Point(40.0, 28.0 + step * 0.5) for step in (7, 2, 9, 1, 10, 4, 6, 3, 8, 5)]
    order = order_stops(depot, stops)
    assert order == optimal_order(depot, stops)
    assert [stops[i].lon for i in order] == sorted(stop.lon for stop in stops)


def test_ten_random_stops_are_close_to_the_brute_force_optimum() -> None:
    """2-opt is a heuristic: on 20 fixed 10-stop cases it must stay within 12 % and mostly hit the optimum."""
    ratios = []
    for seed in range(20):
        depot, stops = _random_stops(seed, count=10)
        optimum = _length(depot, stops, optimal_order(depot, stops))
        ratios.append(_length(depot, stops, order_stops(depot, stops)) / optimum)
    assert min(ratios) >= 1 - 1e-9  # nothing beats the exhaustive search
    assert max(ratios) <= 1.12
    assert sum(ratio < 1 + 1e-9 for ratio in ratios) >= 12
