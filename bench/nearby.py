"""Nearby search over a million generated merchants, beside a plain full scan in the same script.

    .venv/bin/python -m bench.nearby --db sqlite
    .venv/bin/python -m bench.nearby --db postgres --merchants 1000000 --queries 2000

See bench/README.md for what is measured and what the ratio means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator

import asyncpg
from sqlalchemy.engine import make_url

from bench._common import percentile, scratch_database, table
from ledger import geo, merchants
from ledger.merchants import E6
from ledger.service import LedgerService

# City centre, share of the merchants, and the distance (km) over which density falls by e
# (Clark's exponential model of urban density). About 120 million people live here; one
# alliance merchant per ~100 of them gives the million.
CITIES: tuple[tuple[str, float, float, float, float], ...] = (
    ("上海", 31.2304, 121.4737, 0.25, 7.0),
    ("苏州", 31.2989, 120.5853, 0.09, 5.0),
    ("杭州", 30.2741, 120.1551, 0.10, 5.5),
    ("南京", 32.0603, 118.7969, 0.09, 5.0),
    ("宁波", 29.8683, 121.5440, 0.05, 4.0),
    ("无锡", 31.4912, 120.3119, 0.05, 4.0),
    ("合肥", 31.8206, 117.2272, 0.06, 4.5),
    ("常州", 31.8107, 119.9741, 0.04, 3.5),
    ("南通", 31.9802, 120.8943, 0.04, 3.5),
    ("嘉兴", 30.7469, 120.7555, 0.03, 3.0),
    ("绍兴", 30.0303, 120.5802, 0.03, 3.0),
    ("台州", 28.6564, 121.4208, 0.03, 3.0),
    ("金华", 29.0790, 119.6474, 0.02, 3.0),
    ("扬州", 32.3942, 119.4130, 0.02, 3.0),
    ("湖州", 30.8930, 120.0868, 0.02, 2.5),
    ("镇江", 32.1878, 119.4250, 0.02, 2.5),
)
RURAL_SHARE = 0.06  # towns and villages across the delta
DELTA_BOX = (28.5, 32.5, 117.0, 122.0)  # lat_min, lat_max, lon_min, lon_max
CATEGORIES = (
    "grocery",
    "restaurant",
    "cafe",
    "bakery",
    "pharmacy",
    "fruit",
    "clothing",
    "electronics",
    "hairdresser",
    "laundry",
    "bookstore",
    "tea",
)
KM_PER_DEG_LAT = 111.32


def generate(count: int, seed: int = 2026) -> Iterator[tuple[float, float, str]]:
    """``count`` merchants: (lat, lon, category), dense in the cities, thin between them."""
    rnd = random.Random(seed)
    weights = [c[3] for c in CITIES]
    scale = (1 - RURAL_SHARE) / sum(weights)
    for _ in range(count):
        if rnd.random() < RURAL_SHARE:
            lat = rnd.uniform(DELTA_BOX[0], DELTA_BOX[1])
            lon = rnd.uniform(DELTA_BOX[2], DELTA_BOX[3])
        else:
            _name, clat, clon, _w, r0 = rnd.choices(CITIES, [w * scale for w in weights])[0]
            # r from density ~ exp(-r/r0) on the plane: a Gamma(2, r0) distance.
            r = rnd.gammavariate(2.0, r0)
            bearing = rnd.uniform(0, 2 * math.pi)
            lat = clat + r * math.cos(bearing) / KM_PER_DEG_LAT
            lon = clon + r * math.sin(bearing) / (KM_PER_DEG_LAT * math.cos(math.radians(clat)))
        yield round(lat, 6), round(lon, 6), rnd.choice(CATEGORIES)


def rows(count: int, created_at: object) -> Iterator[tuple[object, ...]]:
    for n, (lat, lon, category) in enumerate(generate(count)):
        yield (
            f"商家{n:07d}",
            category,
            f"测试路{n % 999 + 1}号",
            round(lat * E6),
            round(lon * E6),
            geo.cell_of(lat, lon),
            "09:00-21:00",
            500,
            2000,
            True,
            created_at,
        )


COLUMNS = (
    "name",
    "category",
    "address",
    "lat_e6",
    "lon_e6",
    "cell",
    "hours",
    "concession_bp",
    "voucher_cap_bp",
    "active",
    "created_at",
)


# Each merchant's one store, as ``merchants.create`` and migration 0009 make it: the nearby search
# reads stores (issue 11).
FIRST_STORES = (
    "INSERT INTO stores (merchant_id, name, category, address, lat_e6, lon_e6, cell, hours,"
    " active, created_at) SELECT id, name, category, address, lat_e6, lon_e6, cell, hours,"
    " active, created_at FROM merchants ORDER BY id"
)


async def load(url: str, count: int) -> None:
    """Bulk-load straight through the driver (seeding, not what is measured)."""
    created = dt.datetime(2026, 1, 1)
    database = make_url(url).database or ""
    if url.startswith("sqlite"):
        db = sqlite3.connect(database)
        try:
            sql = (
                f"INSERT INTO merchants ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})"
            )
            with db:
                # Stored the way SQLAlchemy stores a DateTime on SQLite.
                db.executemany(sql, rows(count, created.strftime("%Y-%m-%d %H:%M:%S.%f")))
                db.execute(FIRST_STORES)
            db.execute("ANALYZE")
        finally:
            db.close()
    else:
        conn = await asyncpg.connect(url)
        try:
            await conn.copy_records_to_table(
                "merchants", records=rows(count, created), columns=COLUMNS
            )
            await conn.execute(FIRST_STORES)
            await conn.execute("VACUUM ANALYZE merchants")
            await conn.execute("VACUUM ANALYZE stores")
        finally:
            await conn.close()


def full_scan(db_rows: list[tuple[int, str, int, int]], lat: float, lon: float, radius: int) -> int:
    """The baseline: every merchant's true distance, those within the radius, nearest first."""
    found = []
    for merchant_id, _category, lat_e6, lon_e6 in db_rows:
        d = geo.haversine_m(lat, lon, lat_e6 / E6, lon_e6 / E6)
        if d <= radius:
            found.append((d, merchant_id))
    found.sort()
    return len(found)


async def scan_baseline(
    service: LedgerService, points: list[tuple[float, float]], radius: int
) -> list[float]:
    """A plain full scan per query: read every merchant, compute every distance."""
    from sqlalchemy import select

    from ledger.schema import Merchant

    took = []
    for lat, lon in points:
        t0 = time.perf_counter()
        async with service.ctx.db.read() as session:
            result = await session.execute(
                select(Merchant.id, Merchant.category, Merchant.lat_e6, Merchant.lon_e6).where(
                    Merchant.active.is_(True)
                )
            )
            all_rows = [(r[0], r[1], r[2], r[3]) for r in result]
        full_scan(all_rows, lat, lon, radius)
        took.append(time.perf_counter() - t0)
    return took


def query_points(count: int, merchants_total: int, seed: int = 7) -> list[tuple[float, float]]:
    """Where people search from: beside a random merchant (so, where merchants are dense)."""
    rnd = random.Random(seed)
    picks = sorted(rnd.sample(range(merchants_total), count))
    out = []
    wanted = iter(picks)
    target = next(wanted, None)
    for n, (lat, lon, _category) in enumerate(generate(merchants_total)):
        if n == target:
            walk = rnd.uniform(0, 300) / 1000 / KM_PER_DEG_LAT
            bearing = rnd.uniform(0, 2 * math.pi)
            out.append((lat + walk * math.cos(bearing), lon + walk * math.sin(bearing)))
            target = next(wanted, None)
            if target is None:
                break
    rnd.shuffle(out)
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def main(args: argparse.Namespace) -> None:
    async with scratch_database(args.db, "gp_bench_nearby") as url:
        service = await LedgerService.open(url)
        await service.close()
        t0 = time.perf_counter()
        await load(url, args.merchants)
        print(
            f"loaded {args.merchants:,} merchants in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        service = await LedgerService.open(url)
        try:
            points = query_points(args.queries + args.warmup, args.merchants)
            ctx = service.ctx
            totals: list[int] = []
            for lat, lon in points[: args.warmup]:
                await merchants.nearby(ctx, lat, lon, args.radius)
            took: list[float] = []
            for lat, lon in points[args.warmup :]:
                t = time.perf_counter()
                found = await merchants.nearby(ctx, lat, lon, args.radius)
                took.append(time.perf_counter() - t)
                totals.append(found.total)
            took.sort()
            scan = await scan_baseline(service, points[: args.scans], args.radius)
        finally:
            await service.close()
    p50, p99 = percentile(took, 50), percentile(took, 99)
    scan_p50 = statistics.median(scan)
    totals.sort()
    rows_out = [
        ("nearby p50 / p99", f"{_ms(p50)} / {_ms(p99)}"),
        ("nearby mean / max", f"{_ms(statistics.fmean(took))} / {_ms(took[-1])}"),
        (
            "merchants within radius p50 / p99 / max",
            f"{percentile(totals, 50):,} / {percentile(totals, 99):,} / {totals[-1]:,}",
        ),
        (f"full scan + haversine (median of {len(scan)})", _ms(scan_p50)),
        ("ratio scan ÷ nearby p50", f"{scan_p50 / p50:,.0f}×"),
        ("ratio scan ÷ nearby p99", f"{scan_p50 / p99:,.0f}×"),
        ("aim", "p99 ≤ 5 ms on SQLite, ≥ 100× faster than the scan"),
    ]
    title = (
        f"nearby on {args.db}: {args.merchants:,} merchants, radius {args.radius} m, "
        f"{len(took):,} queries"
    )
    print(table(rows_out, title))
    print("load average (1, 5, 15 min):", os.getloadavg())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--merchants", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--radius", type=int, default=1500)
    p.add_argument("--scans", type=int, default=5, help="full scans for the baseline")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
