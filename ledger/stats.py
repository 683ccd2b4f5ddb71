"""Alliance-wide figures for admins."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from ledger.context import Ctx
from ledger.models import StatsOut
from ledger.purchases import current_price, price_out
from ledger.schema import Member, Merchant


async def stats(ctx: Ctx) -> StatsOut:
    since = ctx.now() - dt.timedelta(days=7)
    async with ctx.db.read() as session:
        members = await session.scalar(select(func.count(Member.id)))
        active = await session.scalar(
            select(func.count(Member.id)).where(Member.last_active_at >= since)
        )
        merchants = await session.scalar(
            select(func.count(Merchant.id)).where(Merchant.active.is_(True))
        )
        vouchers = await session.scalar(select(func.coalesce(func.sum(Member.vouchers_fen), 0)))
        price = await current_price(session)
    return StatsOut(
        members=members or 0,
        active_7d=active or 0,
        merchants=merchants or 0,
        points_outstanding=price.points,
        vouchers_outstanding_fen=int(vouchers or 0),
        pool_fen=price.pool_fen,
        price=price_out(price),
    )
