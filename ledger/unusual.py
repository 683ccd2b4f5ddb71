"""Unusual purchase volume (issue 11, insider limits; DESIGN.md "Merchants and their money").

A merchant's local day is unusual when its purchase volume V (fen) is above
``Rules.unusual_volume_floor_fen`` and above ``Rules.unusual_volume_multiple_bp`` / 10,000
times the median M of its own volumes on the ``Rules.unusual_volume_days`` local days before
(a day without purchases counts 0, so a new merchant's first big day is flagged). Compared
exactly in integers: 2 × V × 10,000 > multiple_bp × (2 × M), with 2 × M the sum of the two
middle days for an even count. Refunds are not netted out: volume is what was booked.

Two reads: the day's volume per merchant above the floor (over the purchases' created_at
index), then those merchants' trailing days in one grouped read over their
(merchant_id, created_at) index, each purchase put in its local day by comparing with the
days' bounds (correct across daylight-saving changes). The release emits one
``merchant.unusual_volume`` event per flagged merchant for the day before the release's day,
which the bot turns into a notice to its admins.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import events
from ledger.context import Ctx
from ledger.models import UnusualMerchant, UnusualVolumeOut
from ledger.rules import BP
from ledger.schema import Merchant, Purchase


def doubled_median(values: list[int]) -> int:
    """Twice the median of ``values`` (an integer for an even count too); 0 for none."""
    if not values:
        return 0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] * 2 if len(ordered) % 2 else ordered[mid - 1] + ordered[mid]


def is_unusual(day_fen: int, doubled: int, multiple_bp: int, floor_fen: int) -> bool:
    return day_fen > floor_fen and 2 * day_fen * BP > multiple_bp * doubled


async def find(session: AsyncSession, ctx: Ctx, day: dt.date) -> UnusualVolumeOut:
    rules = ctx.rules
    start, end = ctx.day_bounds(day)
    busy = (
        await session.execute(
            select(Purchase.merchant_id, func.sum(Purchase.amount_fen), func.count())
            .where(Purchase.created_at >= start, Purchase.created_at < end)
            .group_by(Purchase.merchant_id)
            .having(func.sum(Purchase.amount_fen) > rules.unusual_volume_floor_fen)
        )
    ).all()
    out = UnusualVolumeOut(
        date=day,
        multiple_bp=rules.unusual_volume_multiple_bp,
        floor_fen=rules.unusual_volume_floor_fen,
        days=rules.unusual_volume_days,
        merchants=[],
    )
    if not busy:
        return out
    days = [day - dt.timedelta(days=n) for n in range(rules.unusual_volume_days, 0, -1)]
    bounds = [ctx.day_bounds(d)[1] for d in days]  # each trailing day's end, oldest first
    which = case(
        *((Purchase.created_at < b, n) for n, b in enumerate(bounds)), else_=len(bounds)
    )
    ids = [int(m) for m, _f, _c in busy]
    history = (
        await session.execute(
            select(Purchase.merchant_id, which.label("d"), func.sum(Purchase.amount_fen))
            .where(
                Purchase.merchant_id.in_(ids),
                Purchase.created_at >= ctx.day_bounds(days[0])[0],
                Purchase.created_at < start,
            )
            .group_by(Purchase.merchant_id, which)
        )
    ).all()
    per_day: dict[int, list[int]] = defaultdict(lambda: [0] * len(days))
    for merchant_id, d, fen in history:
        per_day[int(merchant_id)][int(d)] += int(fen)
    named = await session.execute(select(Merchant.id, Merchant.name).where(Merchant.id.in_(ids)))
    names = {int(merchant_id): str(name) for merchant_id, name in named.all()}
    for merchant_id, fen, count in sorted(busy, key=lambda row: -int(row[1])):
        doubled = doubled_median(per_day[int(merchant_id)])
        if is_unusual(int(fen), doubled, rules.unusual_volume_multiple_bp, out.floor_fen):
            out.merchants.append(
                UnusualMerchant(
                    merchant_id=int(merchant_id),
                    name=names.get(int(merchant_id), ""),
                    day_fen=int(fen),
                    day_count=int(count),
                    median_fen=doubled // 2,
                )
            )
    return out


async def announce(session: AsyncSession, ctx: Ctx, day: dt.date, now: dt.datetime) -> int:
    """One ``merchant.unusual_volume`` event per merchant unusual on ``day``; how many. The
    release calls this once, in the transaction that marks the day's release done."""
    found = await find(session, ctx, day)
    for m in found.merchants:
        await events.emit(
            session,
            events.UNUSUAL_VOLUME,
            now=now,
            merchant_id=m.merchant_id,
            payload={
                "date": day.isoformat(),
                "merchant_name": m.name,
                "day_fen": m.day_fen,
                "day_count": m.day_count,
                "median_fen": m.median_fen,
            },
        )
    return len(found.merchants)


async def unusual_volume(ctx: Ctx, day: dt.date | None = None) -> UnusualVolumeOut:
    """The merchants whose purchase volume on local ``day`` (default: yesterday) was unusual."""
    day = day or ctx.today() - dt.timedelta(days=1)
    async with ctx.db.read() as session:
        return await find(session, ctx, day)
