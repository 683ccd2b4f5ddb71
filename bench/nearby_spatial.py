"""Nearby on the database's own spatial index, beside the ledger's grid, on the same merchants.

    .venv/bin/python -m bench.nearby_spatial --db sqlite
    .venv/bin/python -m bench.nearby_spatial --db postgres --queries 500

The question (issue 12's nearby item): would SQLite's R*Tree or PostgreSQL's GiST (the
``earthdistance`` extension's ``ll_to_earth`` cube) answer "merchants within 1.5 km, counted by
category, nearest ten" as fast as the ledger's hand-written grid (``ledger/geo.py``)? Both sides
answer the same question at the same query points (bench/nearby.py's generator): the grid
through ``ledger.merchants.nearby`` (pydantic answer included), the spatial index as bare SQL
with the exact distances settled in Python; and, to compare the indexes alone, the grid's same
key ranges as bare SQL settled the same way. The ratio printed is spatial ÷ grid, both bare SQL,
at p50 and p99: above 1 the grid is faster. See bench/README.md for the figures and the decision.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sqlite3
import sys
import time
from collections import Counter

import asyncpg
from sqlalchemy.engine import make_url

from bench._common import percentile, scratch_database
from bench.nearby import load, query_points
from ledger import geo, merchants
from ledger.merchants import E6
from ledger.service import LedgerService

RTREE = (
    "CREATE VIRTUAL TABLE merchant_rtree USING rtree_i32(id, lat0, lat1, lon0, lon1);"
    "INSERT INTO merchant_rtree SELECT id, lat_e6, lat_e6, lon_e6, lon_e6 FROM merchants "
    "WHERE active;"
)
RTREE_QUERY = (
    "SELECT m.id, m.category, m.lat_e6, m.lon_e6 FROM merchant_rtree r JOIN merchants m "
    "ON m.id = r.id WHERE r.lat0 >= ? AND r.lat1 <= ? AND r.lon0 >= ? AND r.lon1 <= ?"
)
GIST = (
    "CREATE EXTENSION IF NOT EXISTS cube; CREATE EXTENSION IF NOT EXISTS earthdistance; "
    "CREATE INDEX ix_merchants_earth ON merchants USING gist "
    "(ll_to_earth(lat_e6 / 1e6, lon_e6 / 1e6)); ANALYZE merchants"
)
GIST_QUERY = (
    "SELECT id, category, lat_e6, lon_e6 FROM merchants "
    "WHERE earth_box(ll_to_earth($1, $2), $3) @> ll_to_earth(lat_e6 / 1e6, lon_e6 / 1e6) "
    "AND active"
)


def grid_sql(lat: float, lon: float, radius: int, mark: str) -> tuple[str, list[int]]:
    """The grid's candidate rows as bare SQL: one key range of the covering index per row of
    cells (what ledger.merchants reads), for the same settling in Python as the spatial side."""
    ranges = geo.cell_ranges(lat, lon, radius)
    params: list[int] = []
    parts = []
    for lo, hi in ranges:
        if mark == "?":
            parts.append("cell BETWEEN ? AND ?")
        else:
            parts.append(f"cell BETWEEN ${len(params) + 1} AND ${len(params) + 2}")
        params += [lo, hi]
    where = " OR ".join(parts)
    return f"SELECT id, category, lat_e6, lon_e6 FROM merchants WHERE ({where}) AND active", params


def settle(
    rows: list[tuple[int, str, int, int]], lat: float, lon: float, radius: int
) -> tuple[Counter[str], list[tuple[float, int]]]:
    """What nearby answers, from candidate rows: counts by category and the nearest ten."""
    found = [
        (d, merchant_id, category)
        for merchant_id, category, lat_e6, lon_e6 in rows
        if (d := geo.haversine_m(lat, lon, lat_e6 / E6, lon_e6 / E6)) <= radius
    ]
    counts = Counter(category for _d, _id, category in found)
    found.sort()
    return counts, [(d, i) for d, i, _c in found[:10]]


def agree(
    counts: Counter[str], nearest: list[tuple[float, int]], grid: tuple[int, list[int]]
) -> None:
    """Both ways found as many merchants, and the same nearest distances (to the metre)."""
    total, metres = grid
    assert sum(counts.values()) == total, (sum(counts.values()), total)
    assert [round(d) for d, _i in nearest] == metres, ([round(d) for d, _i in nearest], metres)


def box(lat: float, lon: float, radius: int) -> tuple[int, int, int, int]:
    dlat = math.degrees(radius / geo.EARTH_RADIUS_M)
    dlon = dlat / max(1e-9, math.cos(math.radians(lat)))
    return (
        math.floor((lat - dlat) * E6),
        math.ceil((lat + dlat) * E6),
        math.floor((lon - dlon) * E6),
        math.ceil((lon + dlon) * E6),
    )


def _ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.2f} ms"


async def main(args: argparse.Namespace) -> None:
    async with scratch_database(args.db, "gp_bench_spatial") as url:
        service = await LedgerService.open(url)
        await service.close()
        await load(url, args.merchants)
        service = await LedgerService.open(url)
        points = query_points(args.queries + args.warmup, args.merchants)
        grid: list[float] = []
        checks: list[tuple[int, list[int]]] = []  # total, nearest ten's metres
        try:
            for n, (lat, lon) in enumerate(points):
                t = time.perf_counter()
                out = await merchants.nearby(service.ctx, lat, lon, args.radius)
                if n >= args.warmup:
                    grid.append(time.perf_counter() - t)
                    checks.append((out.total, [m.distance_m for m in out.merchants]))
        finally:
            await service.close()
        spatial: list[float] = []
        raw: list[float] = []
        t0 = time.perf_counter()
        if args.db == "sqlite":
            db = sqlite3.connect(make_url(url).database or "")
            try:
                for n, (lat, lon) in enumerate(points):
                    t = time.perf_counter()
                    sql, params = grid_sql(lat, lon, args.radius, "?")
                    rows = db.execute(sql, params).fetchall()
                    counts, nearest = settle(rows, lat, lon, args.radius)
                    if n >= args.warmup:
                        raw.append(time.perf_counter() - t)
                        agree(counts, nearest, checks[n - args.warmup])
                t0 = time.perf_counter()
                db.executescript(RTREE)
                db.commit()
                built = time.perf_counter() - t0
                for n, (lat, lon) in enumerate(points):
                    t = time.perf_counter()
                    rows = db.execute(RTREE_QUERY, box(lat, lon, args.radius)).fetchall()
                    counts, nearest = settle(rows, lat, lon, args.radius)
                    if n >= args.warmup:
                        spatial.append(time.perf_counter() - t)
                        agree(counts, nearest, checks[n - args.warmup])
            finally:
                db.close()
        else:
            conn = await asyncpg.connect(url.replace("+asyncpg", ""))
            try:
                for n, (lat, lon) in enumerate(points):
                    t = time.perf_counter()
                    sql, params = grid_sql(lat, lon, args.radius, "$")
                    rows = await conn.fetch(sql, *params)
                    counts, nearest = settle([tuple(r) for r in rows], lat, lon, args.radius)
                    if n >= args.warmup:
                        raw.append(time.perf_counter() - t)
                        agree(counts, nearest, checks[n - args.warmup])
                t0 = time.perf_counter()
                await conn.execute(GIST)
                built = time.perf_counter() - t0
                query = await conn.prepare(GIST_QUERY)
                for n, (lat, lon) in enumerate(points):
                    t = time.perf_counter()
                    # The box is a little larger than the circle; the exact distance decides.
                    rows = await query.fetch(lat, lon, args.radius * 1.001)
                    counts, nearest = settle([tuple(r) for r in rows], lat, lon, args.radius)
                    if n >= args.warmup:
                        spatial.append(time.perf_counter() - t)
                        agree(counts, nearest, checks[n - args.warmup])
            finally:
                await conn.close()
    grid.sort()
    spatial.sort()
    raw.sort()
    index = "R*Tree (rtree_i32)" if args.db == "sqlite" else "GiST (earthdistance)"
    print(f"{args.db}, {args.merchants:,} merchants, {len(grid)} queries, radius {args.radius} m")
    print(f"grid (ledger.merchants.nearby): p50 {_ms(grid, 50)}, p99 {_ms(grid, 99)}")
    print(f"grid, bare SQL + Python distances: p50 {_ms(raw, 50)}, p99 {_ms(raw, 99)}")
    print(f"{index}, built in {built:.0f} s: p50 {_ms(spatial, 50)}, p99 {_ms(spatial, 99)}")
    print(
        f"spatial ÷ grid, both bare SQL: p50 {percentile(spatial, 50) / percentile(raw, 50):.2f}×, "
        f"p99 {percentile(spatial, 99) / percentile(raw, 99):.2f}×"
    )
    print("load:", os.getloadavg())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--merchants", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--radius", type=int, default=1500)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
