"""What a member has: points and their value at today's price, vouchers, recent activity.

Activity is read from the member's own events (indexed by member and id), so every movement a
member can see is exactly one the ledger also announced.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from ledger import events
from ledger.context import Ctx
from ledger.errors import InvalidRequest, MemberNotFound
from ledger.models import ActivityItem, BalanceOut
from ledger.purchases import current_price, price_out
from ledger.redemptions import available_vouchers
from ledger.schema import Event, Member

MOVEMENTS = (events.POINTS_EARNED, events.VOUCHER_GRANTED, events.VOUCHER_REDEEMED)


def _activity(e: Event) -> ActivityItem:
    p = e.payload
    if e.type == events.POINTS_EARNED:
        return ActivityItem(
            event_id=e.id,
            type=e.type,
            at=e.created_at,
            points=p.get("points", 0),
            amount_fen=p.get("amount_fen", 0),
            merchant_id=e.merchant_id,
            merchant_name=p.get("merchant_name"),
        )
    if e.type == events.VOUCHER_GRANTED:
        return ActivityItem(
            event_id=e.id,
            type=e.type,
            at=e.created_at,
            points=-p.get("points_burned", 0),
            vouchers_fen=p.get("vouchers_fen", 0),
        )
    return ActivityItem(
        event_id=e.id,
        type=e.type,
        at=e.created_at,
        points=p.get("points", 0),
        vouchers_fen=-p.get("vouchers_fen", 0),
        amount_fen=p.get("bill_fen", 0),
        merchant_id=e.merchant_id,
        merchant_name=p.get("merchant_name"),
    )


async def balance(
    ctx: Ctx, member_id: int, limit: int = 5, before: int | None = None
) -> BalanceOut:
    if not 0 <= limit <= 50:
        raise InvalidRequest("limit must be 0-50")
    now = ctx.now()
    async with ctx.db.read() as session:
        member = await session.get(Member, member_id)
        if member is None:
            raise MemberNotFound("no such member", member_id=member_id)
        price = await current_price(session)
        lots = await available_vouchers(session, member_id, now)
        query = (
            select(Event)
            .where(Event.member_id == member_id, Event.type.in_(MOVEMENTS))
            .order_by(Event.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            query = query.where(Event.id < before)
        rows = list((await session.scalars(query)).all()) if limit else []
    more = len(rows) > limit
    rows = rows[:limit]
    nearest: dt.datetime | None = lots[0].expires_at if lots else None
    return BalanceOut(
        member_id=member_id,
        points=member.points,
        points_value_fen=price.value_of(member.points),
        price=price_out(price),
        vouchers_fen=sum(lot.remaining_fen for lot in lots),
        nearest_expiry=nearest,
        nearest_expiry_fen=sum(lot.remaining_fen for lot in lots if lot.expires_at == nearest),
        activity=[_activity(e) for e in rows],
        activity_next_before=rows[-1].id if more and rows else None,
    )
