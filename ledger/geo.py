"""Great-circle distance and the grid that makes "near me" an index lookup.

Merchants are filed under a cell of 0.002° of latitude (about 220 m) by 0.0001° of longitude
(about 10 m). A search reads one contiguous key range per 220 m row of cells, cut to the chord
of the circle across that row, so the index entries it reads cover little more than the circle
itself (about 1.1× its area, against 2.4× for square kilometre cells and their bounding box).

Within those ranges the database tells inside from outside with arithmetic alone (``Disc``): a
flat-earth distance, which over a few kilometres is within centimetres of the true one; only the
thin band where the two could disagree is settled by the true (haversine) distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8
ROW_DEG = 0.002
COL_DEG = 0.0001
_ROWS = 90_001
_COLS = 3_600_001
_SPAN = 4_000_000  # > _COLS so each row of cells is one contiguous key range
M_PER_E6 = EARTH_RADIUS_M * math.pi / 180 / 1_000_000  # metres per micro-degree of latitude


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _row(lat: float) -> int:
    return min(_ROWS - 1, max(0, math.floor((lat + 90.0) / ROW_DEG)))


def _col(lon: float) -> int:
    return min(_COLS - 1, max(0, math.floor((lon + 180.0) / COL_DEG)))


def cell_of(lat: float, lon: float) -> int:
    return _row(lat) * _SPAN + _col(lon)


def _half_chord_deg(lat0: float, lat: float, h: float) -> float:
    """Half the circle's width in longitude at latitude ``lat`` (``h``: haversine of the radius)."""
    rest = h - math.sin(math.radians(lat - lat0) / 2) ** 2
    if rest <= 0:
        return 0.0
    across = math.cos(math.radians(lat0)) * math.cos(math.radians(lat))
    if across <= 1e-12:
        return 180.0
    s = math.sqrt(rest / across)
    return 180.0 if s >= 1 else math.degrees(2 * math.asin(s))


def cell_ranges(lat: float, lon: float, radius_m: float) -> list[tuple[int, int]]:
    """Inclusive key ranges of every cell that may hold a point within ``radius_m``: one per
    row of cells, as wide as the circle's chord across that row, plus two cells of slack."""
    return rim_ranges(lat, lon, radius_m, radius_m)


def rim_ranges(lat: float, lon: float, radius_m: float, depth_m: float) -> list[tuple[int, int]]:
    """Like ``cell_ranges``, less the cells wholly within ``radius_m - depth_m``: the rim.

    A row of cells that crosses the inner circle yields two ranges, one either side of it.
    """
    h = math.sin(radius_m / EARTH_RADIUS_M / 2) ** 2
    h_in = math.sin(max(0.0, radius_m - depth_m) / EARTH_RADIUS_M / 2) ** 2
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    ranges = []
    for row in range(_row(lat - dlat), _row(lat + dlat) + 1):
        south = row * ROW_DEG - 90.0
        north = south + ROW_DEG
        nearest = min(max(lat, south), north)
        half = max(_half_chord_deg(lat, x, h) for x in (south, nearest, north))
        half = min(180.0, half + 2 * COL_DEG)
        lo, hi = row * _SPAN + _col(lon - half), row * _SPAN + _col(lon + half)
        # Within the inner circle across the whole row: its narrowest chord (at an edge of the
        # row; zero where an edge is outside it), less slack; only whole cells are skipped.
        inner = min(_half_chord_deg(lat, x, h_in) for x in (south, north)) - 2 * COL_DEG
        skip_lo = row * _SPAN + _col(lon - inner) + 1
        skip_hi = row * _SPAN + _col(lon + inner) - 1
        if inner <= 0 or skip_lo > skip_hi:
            ranges.append((lo, hi))
        else:
            ranges += [(lo, skip_lo - 1), (skip_hi + 1, hi)]
    return ranges


@dataclass(frozen=True)
class Disc:
    """A search circle as the database can test it with arithmetic on micro-degrees.

    ``d2(lat_e6, lon_e6) = (lat_e6 - lat_e6)² + (lon_e6 - lon_e6)² · kx`` is the squared
    flat-earth distance in micro-degrees of latitude. At most ``inner2`` it is certainly within
    the radius, above ``outer2`` certainly not; in between only the true distance can say. The
    band is wider than the worst disagreement of the two distances by a factor of ten.
    """

    lat_e6: float
    lon_e6: float
    kx: float
    inner2: float
    outer2: float
    margin_m: float  # half the band's width: how far the two distances may be trusted apart


def disc(lat: float, lon: float, radius_m: float) -> Disc:
    reach = radius_m / EARTH_RADIUS_M
    # The flat distance drifts from the true one by about tan(latitude) × reach, relative.
    slope = math.tan(math.radians(min(89.0, abs(lat) + math.degrees(reach))))
    margin_m = radius_m * (3 * slope * reach + 1e-4) + 1.0
    inner = max(0.0, radius_m - margin_m) / M_PER_E6
    outer = (radius_m + margin_m) / M_PER_E6
    return Disc(
        lat * 1_000_000,
        lon * 1_000_000,
        math.cos(math.radians(lat)) ** 2,
        inner * inner,
        outer * outer,
        margin_m,
    )


def walking_minutes(distance_m: int, speed_m_per_min: int = 80) -> int:
    """About 4.8 km/h, the pace the 15-minute convenience circle is drawn with."""
    return max(1, math.ceil(distance_m / speed_m_per_min))
