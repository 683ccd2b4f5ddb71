"""Great-circle distance and the grid that makes "near me" an index lookup.

Merchants are filed under a 0.01° × 0.01° cell (about 1.1 km × 1 km in China). A search reads
only the cells that overlap the circle's bounding box — one contiguous key range per row of
cells — and ranks the candidates by true distance.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8
CELL_DEG = 0.01
_LAT_CELLS = 18_001
_LON_CELLS = 36_001
_LON_SPAN = 40_000  # > _LON_CELLS so each row of cells is one contiguous key range


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _row(lat: float) -> int:
    return min(_LAT_CELLS - 1, max(0, math.floor((lat + 90.0) / CELL_DEG)))


def _col(lon: float) -> int:
    return min(_LON_CELLS - 1, max(0, math.floor((lon + 180.0) / CELL_DEG)))


def cell_of(lat: float, lon: float) -> int:
    return _row(lat) * _LON_SPAN + _col(lon)


def cell_ranges(lat: float, lon: float, radius_m: float) -> list[tuple[int, int]]:
    """Inclusive key ranges of every cell that may hold a point within ``radius_m``."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    coslat = max(math.cos(math.radians(min(89.9, abs(lat) + dlat))), 1e-6)
    dlon = min(180.0, math.degrees(radius_m / (EARTH_RADIUS_M * coslat)))
    col_lo, col_hi = _col(lon - dlon), _col(lon + dlon)
    return [
        (row * _LON_SPAN + col_lo, row * _LON_SPAN + col_hi)
        for row in range(_row(lat - dlat), _row(lat + dlat) + 1)
    ]


def walking_minutes(distance_m: int, speed_m_per_min: int = 80) -> int:
    """About 4.8 km/h, the pace the 15-minute convenience circle is drawn with."""
    return max(1, math.ceil(distance_m / speed_m_per_min))
