"""Great-circle distances and stop ordering (nearest neighbour, then 2-opt) for tours that start at a depot.

Pure functions over (lat, lon) points, no Django: a tour is an open path depot → stops (no return leg).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

# IUGG mean Earth radius: minimises the RMS error of a sphere against the WGS-84 ellipsoid.
EARTH_RADIUS_KM = 6371.0088
# 2-opt stops improving below this gain, so float noise cannot make it loop.
_EPSILON_KM = 1e-9


class Point(NamedTuple):
    lat: float
    lon: float


def haversine_km(a: Point, b: Point) -> float:
    """Great-circle distance between two points, in kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    # min() guards asin against 1.0000000000000002 for antipodal points.
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def distance_matrix(points: Sequence[Point]) -> list[list[float]]:
    n = len(points)
    matrix = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i][j] = matrix[j][i] = haversine_km(points[i], points[j])
    return matrix


def tour_length(matrix: Sequence[Sequence[float]], order: Sequence[int]) -> float:
    """Length of depot (index 0) → order[0] → … → order[-1]; `order` holds indices into the matrix."""
    total, previous = 0.0, 0
    for index in order:
        total += matrix[previous][index]
        previous = index
    return total


def nearest_neighbour(matrix: Sequence[Sequence[float]]) -> list[int]:
    """Greedy tour from the depot (index 0) over every other index; ties go to the lower index."""
    unvisited = set(range(1, len(matrix)))
    order, current = [], 0
    while unvisited:
        current = min(unvisited, key=lambda j: (matrix[current][j], j))
        unvisited.remove(current)
        order.append(current)
    return order


def two_opt(matrix: Sequence[Sequence[float]], order: Sequence[int]) -> list[int]:
    """Reverse segments while that shortens the open tour; never returns a longer tour than `order`."""
    tour = [0, *order]
    last = len(tour) - 1
    improved = True
    while improved:
        improved = False
        for i in range(1, last):
            for j in range(i + 1, last + 1):
                # Edges (i-1, i) and (j, j+1) become (i-1, j) and (i, j+1); the tour is open after `last`.
                before = matrix[tour[i - 1]][tour[i]]
                after = matrix[tour[i - 1]][tour[j]]
                if j < last:
                    before += matrix[tour[j]][tour[j + 1]]
                    after += matrix[tour[i]][tour[j + 1]]
                if after < before - _EPSILON_KM:
                    tour[i : j + 1] = reversed(tour[i : j + 1])
                    improved = True
    return tour[1:]


def or_opt(matrix: Sequence[Sequence[float]], order: Sequence[int]) -> list[int]:
    """Move runs of one to three stops (either way round) elsewhere while that shortens the tour.

    Catches what 2-opt cannot: a stop the greedy start left on the wrong side of the tour.
    """
    tour = [0, *order]
    improved = True
    while improved:
        improved = False
        for size in (1, 2, 3):
            for i in range(1, len(tour) - size + 1):
                moved = _best_move(matrix, tour, i, size)
                if moved is not None:
                    tour = moved
                    improved = True
    return tour[1:]


def _best_move(matrix: Sequence[Sequence[float]], tour: list[int], i: int, size: int) -> list[int] | None:
    """The tour with tour[i:i+size] moved to its best place, or None when no place is shorter."""
    segment, rest = tour[i : i + size], tour[:i] + tour[i + size :]
    prev = tour[i - 1]
    nxt = tour[i + size] if i + size < len(tour) else None
    saving = matrix[prev][segment[0]]
    if nxt is not None:
        saving += matrix[segment[-1]][nxt] - matrix[prev][nxt]
    best_gain, best = _EPSILON_KM, None
    for k in range(len(rest)):  # insert after rest[k]
        a, b = rest[k], rest[k + 1] if k + 1 < len(rest) else None
        for candidate in (segment, segment[::-1]):
            cost = matrix[a][candidate[0]]
            if b is not None:
                cost += matrix[candidate[-1]][b] - matrix[a][b]
            if saving - cost > best_gain:
                best_gain, best = saving - cost, rest[: k + 1] + candidate + rest[k + 1 :]
    return best


def order_stops(depot: Point, stops: Sequence[Point]) -> list[int]:
    """Indices into `stops` in visiting order: nearest neighbour from the depot, then 2-opt and or-opt
    alternately until neither shortens the tour (each step only ever accepts a shorter tour)."""
    matrix = distance_matrix([depot, *stops])
    order = two_opt(matrix, nearest_neighbour(matrix))
    while True:
        improved = two_opt(matrix, or_opt(matrix, order))
        if tour_length(matrix, improved) >= tour_length(matrix, order) - _EPSILON_KM:
            return [index - 1 for index in order]
        order = improved


def optimal_order(depot: Point, stops: Sequence[Point]) -> list[int]:
    """The shortest open tour by exhaustive search (branch and bound): a test oracle for a dozen stops at most."""
    if len(stops) > 12:
        raise ValueError("exhaustive search is for small cases only")
    matrix = distance_matrix([depot, *stops])
    best: list = [math.inf, []]

    def extend(path: list[int], length: float, remaining: set[int]) -> None:
        if length >= best[0]:
            return  # every completion of this prefix is at least as long
        if not remaining:
            best[:] = [length, list(path)]
            return
        for index in sorted(remaining):
            path.append(index)
            remaining.remove(index)
            extend(path, length + matrix[path[-2] if len(path) > 1 else 0][index], remaining)
            remaining.add(index)
            path.pop()

    extend([], 0.0, set(range(1, len(matrix))))
    return [index - 1 for index in best[1]]
