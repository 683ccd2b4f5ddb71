"""A merchant's statement for a month with 100,000 purchases, beside a bare COUNT/SUM over the
same rows in the same script (issue 11: aim ≤ 200 ms on both databases).

    .venv/bin/python -m bench.statement --db sqlite
    .venv/bin/python -m bench.statement --db postgres --purchases 100000 --others 100000

See bench/README.md for what is measured and what the ratio means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, insert, select, text

from bench._common import insert_members, percentile, scratch_database, table
from ledger import statements
from ledger.models import MerchantIn
from ledger.principal import SYSTEM
from ledger.schema import (
    MerchantRelease,
    Purchase,
    Redemption,
    RedemptionCode,
    RedemptionUndo,
)
from ledger.service import LedgerService

MONTH = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
BATCH = 5000


async def _bulk(service: LedgerService, table_: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        async with service.ctx.db.write() as session:
            await session.execute(insert(table_), rows[start : start + BATCH])


def _moment(rnd: random.Random, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
    return lo + dt.timedelta(seconds=rnd.uniform(0, (hi - lo).total_seconds()))


async def seed(service: LedgerService, purchases: int, others: int, members: int) -> int:
    """The merchant's month: ``purchases`` purchases (a tenth of them a redemption's paid part,
    with vouchers; a hundred of those undone), a release a day; ``others`` purchases at ten
    other merchants in the same month, which the statement's index must step over. Rows go
    straight into the tables: seeding, not what is measured."""
    rnd = random.Random(2026)
    shop = await service.create_merchant(
        SYSTEM, MerchantIn(name="一月十万单", category="grocery", lat=30.2, lon=119.7)
    )
    rest = [
        (await service.create_merchant(
            SYSTEM, MerchantIn(name=f"邻店{n}", category="cafe", lat=30.2, lon=119.7)
        )).id
        for n in range(10)
    ]
    member_ids = await insert_members(service.ctx.db, members)
    lo = service.ctx.day_bounds(MONTH[0])[0]
    hi = service.ctx.day_bounds(MONTH[1])[1]

    def purchase(merchant: int) -> dict[str, Any]:
        amount = rnd.randint(500, 50_000)
        return {
            "merchant_id": merchant,
            "member_id": rnd.choice(member_ids),
            "amount_fen": amount,
            "concession_fen": amount // 20,
            "member_points": amount // 40,
            "merchant_points": amount // 200,
            "price_pool_fen": 1,
            "price_points": 1,
            "green_tags": [],
            "created_at": _moment(rnd, lo, hi),
        }

    mine = [purchase(shop.id) for _ in range(purchases)]
    mine.sort(key=lambda r: r["created_at"])
    noise = [purchase(rnd.choice(rest)) for _ in range(others)]
    await _bulk(service, Purchase, sorted(mine + noise, key=lambda r: r["created_at"]))
    async with service.ctx.db.read() as session:
        ids = list(
            (
                await session.scalars(
                    select(Purchase.id).where(Purchase.merchant_id == shop.id).order_by(
                        Purchase.created_at
                    )
                )
            ).all()
        )
    paid_parts = ids[:: 10]
    at = {pid: row["created_at"] for pid, row in zip(ids, mine, strict=True)}
    codes = [
        {"member_id": member_ids[n % len(member_ids)], "code_hash": f"{n:064x}", "state": "used",
         "created_at": at[pid], "expires_at": at[pid], "used_at": at[pid]}
        for n, pid in enumerate(paid_parts)
    ]
    await _bulk(service, RedemptionCode, codes)
    redemptions = [
        {"code_id": n + 1, "merchant_id": shop.id, "member_id": codes[n]["member_id"],
         "bill_fen": 10_000, "vouchers_applied_fen": rnd.randint(1, 2000), "paid_fen": 8_000,
         "points_earned": 200, "purchase_id": pid, "staff": None, "created_at": at[pid]}
        for n, pid in enumerate(paid_parts)
    ]
    await _bulk(service, Redemption, redemptions)
    undone = [
        {"redemption_id": n + 1, "undone_at": at[pid] + dt.timedelta(minutes=5),
         "undone_by": "bench", "response": {}}
        for n, pid in enumerate(paid_parts[:: max(1, len(paid_parts) // 100)])
    ]
    await _bulk(service, RedemptionUndo, undone)
    days = [MONTH[0] + dt.timedelta(days=n) for n in range(30)]
    await _bulk(service, MerchantRelease, [
        statements.released(shop.id, d, service.ctx.day_bounds(d)[0] + dt.timedelta(hours=18),
                            1000, 950)
        for d in days
    ])
    await settled(service)
    return shop.id


async def settled(service: LedgerService) -> None:
    """VACUUM ANALYZE (PostgreSQL) or ANALYZE (SQLite) after the bulk load: what autovacuum
    has long done to a month of rows in production (planner statistics, the visibility map that
    lets an index-only scan skip the table). Both the statement and the baseline run after it."""
    async with service.ctx.db.write_engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        is_pg = conn.dialect.name == "postgresql"
        await conn.execute(text("VACUUM ANALYZE" if is_pg else "ANALYZE"))


async def timed(call: Callable[[], Awaitable[Any]], rounds: int) -> list[float]:
    await call()  # warm: plans, pages, connections
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return sorted(samples)


async def run(kind: str, purchases: int, others: int, members: int, rounds: int) -> None:
    async with scratch_database(kind, "bench-statement") as url:
        service = await LedgerService.open(url)
        try:
            shop = await seed(service, purchases, others, members)
            ctx = service.ctx
            ctx.clock = lambda: dt.datetime(2026, 12, 2, 2, 0)
            lo = ctx.day_bounds(MONTH[0])[0]
            hi = ctx.day_bounds(MONTH[1])[1]

            async def statement() -> Any:
                return await service.statement(SYSTEM, shop, *MONTH)

            async def one_day() -> Any:
                return await service.statement(SYSTEM, shop, MONTH[0], MONTH[0])

            async def bare() -> Any:
                async with ctx.db.read() as session:
                    return (
                        await session.execute(
                            select(func.count(), func.sum(Purchase.concession_fen)).where(
                                Purchase.merchant_id == shop,
                                Purchase.created_at >= lo,
                                Purchase.created_at < hi,
                            )
                        )
                    ).one()

            s = await statement()
            count, _concessions = await bare()
            assert sum(x.count for x in s.totals if x.kind == "purchases") == count == purchases
            base = await timed(bare, rounds)
            month = await timed(statement, rounds)
            day = await timed(one_day, rounds)
        finally:
            await service.close()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    med = statistics.median
    rows = [
        ("purchases of the merchant / others", f"{purchases:,} / {others:,}"),
        ("statement lines (days × kinds)", str(len(s.lines))),
        ("baseline COUNT/SUM, p50 / p95", f"{med(base):.1f} / {percentile(base, 95):.1f} ms"),
        ("month statement, p50 / p95", f"{med(month):.1f} / {percentile(month, 95):.1f} ms"),
        ("day statement, p50 / p95", f"{med(day):.1f} / {percentile(day, 95):.1f} ms"),
        ("month statement ÷ baseline (p50)", f"{med(month) / med(base):.2f}×"),
        ("aim", "month statement ≤ 200 ms"),
    ]
    print(table(rows, f"statement, {kind}, {rounds} rounds, load average {load}"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--purchases", type=int, default=100_000)
    p.add_argument("--others", type=int, default=100_000)
    p.add_argument("--members", type=int, default=5_000)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args(argv)
    asyncio.run(run(args.db, args.purchases, args.others, args.members, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
