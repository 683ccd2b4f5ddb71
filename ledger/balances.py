"""What a member has: points and their value at today's price, vouchers, recent activity.

Activity is read from the member's own events (indexed by member and id), so every movement a
member can see is exactly one the ledger also announced.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, bindparam, func, or_, select

from ledger import events, hold, journal
from ledger.context import Ctx
from ledger.db import Conn, Row, Statement
from ledger.errors import InvalidRequest, MemberNotFound
from ledger.models import ActivityItem, BalanceOut, CappedExit
from ledger.money import Price
from ledger.purchases import price_out
from ledger.schema import Event, Member, MintLot, VoucherLot

MOVEMENTS = (events.POINTS_EARNED, events.VOUCHER_GRANTED, events.VOUCHER_REDEEMED)


def _activity(
    event_id: int,
    kind: str,
    _member_id: int,
    merchant_id: int | None,
    p: dict[str, Any],
    at: dt.datetime,
) -> ActivityItem:
    if kind == events.POINTS_EARNED:
        return ActivityItem(
            event_id=event_id,
            type=kind,
            at=at,
            points=p.get("points", 0),
            amount_fen=p.get("amount_fen", 0),
            merchant_id=merchant_id,
            merchant_name=p.get("merchant_name"),
        )
    if kind == events.VOUCHER_GRANTED:
        return ActivityItem(
            event_id=event_id,
            type=kind,
            at=at,
            points=-p.get("points_burned", 0),
            vouchers_fen=p.get("vouchers_fen", 0),
        )
    return ActivityItem(
        event_id=event_id,
        type=kind,
        at=at,
        points=p.get("points", 0),
        vouchers_fen=-p.get("vouchers_fen", 0),
        amount_fen=p.get("bill_fen", 0),
        merchant_id=merchant_id,
        merchant_name=p.get("merchant_name"),
    )


_members = Member.metadata.tables[Member.__tablename__]
_lots = VoucherLot.metadata.tables[VoucherLot.__tablename__]
_events = Event.metadata.tables[Event.__tablename__]

# /balance is the bot's busiest read: three compiled statements in one hand-off to the driver,
# the price riding along with the member's row.
_mint = MintLot.metadata.tables[MintLot.__tablename__]
# Points still in their hold (issue 11, ``ledger.hold``): the member's lots minted since then.
_PENDING = (
    select(func.coalesce(func.sum(_mint.c.points_left), 0))
    .where(
        _mint.c.member_id == bindparam("member_id"),
        _mint.c.minted_at > bindparam("pending_since", type_=_mint.c.minted_at.type),
        _mint.c.points_left > 0,
    )
    .scalar_subquery()
)
_HOLDINGS = Statement(
    select(_members.c.points, *journal.totals_subqueries(), _PENDING).where(
        _members.c.id == bindparam("member_id")
    )
)
_LIVE_LOTS = Statement(
    select(_lots.c.remaining_fen, _lots.c.expires_at)
    .where(
        _lots.c.member_id == bindparam("member_id"),
        _lots.c.remaining_fen > 0,
        _lots.c.expires_at > bindparam("now", type_=_lots.c.expires_at.type),
    )
    .order_by(_lots.c.expires_at, _lots.c.id)
)
_MOVEMENTS = Statement(
    select(
        _events.c.id,
        _events.c.type,
        _events.c.member_id,
        _events.c.merchant_id,
        _events.c.payload,
        _events.c.created_at,
    )
    .where(
        _events.c.member_id == bindparam("member_id"),
        # One bound value per kind: a Statement is compiled once, without expanding IN.
        or_(*(_events.c.type == kind for kind in MOVEMENTS)),
        _events.c.id < bindparam("before", type_=_events.c.id.type),
    )
    .order_by(_events.c.id.desc())
    .limit(bindparam("rows", type_=Integer))
)
_NO_LIMIT = 2**62
CAPPED_DAYS = 5
# The member's recent exit-cap conversions (issue 13), over the partial index of capped lots.
_CAPPED = Statement(
    select(_mint.c.capped_on, func.sum(_mint.c.capped_points), func.sum(_mint.c.capped_fen))
    .where(_mint.c.member_id == bindparam("member_id"), _mint.c.capped_on.is_not(None))
    .group_by(_mint.c.capped_on)
    .order_by(_mint.c.capped_on.desc())
    .limit(CAPPED_DAYS)
)


async def balance(
    ctx: Ctx, member_id: int, limit: int = 5, before: int | None = None
) -> BalanceOut:
    if not 0 <= limit <= 50:
        raise InvalidRequest("limit must be 0-50")
    now = ctx.now()

    async def read(conn: Conn) -> tuple[Row | None, list[Row], list[Row], list[Row]]:
        holdings = await _HOLDINGS.first(
            conn, member_id=member_id, pending_since=now - hold.hold(ctx.rules)
        )
        if holdings is None:
            return None, [], [], []
        lots = await _LIVE_LOTS.rows(conn, member_id=member_id, now=now)
        rows = (
            await _MOVEMENTS.rows(
                conn, member_id=member_id, before=before or _NO_LIMIT, rows=limit + 1
            )
            if limit
            else []
        )
        capped = await _CAPPED.rows(conn, member_id=member_id)
        return holdings, lots, rows, capped

    holdings, lots, rows, capped = await ctx.db.run_direct(read, readonly=True)
    if holdings is None:
        raise MemberNotFound("no such member", member_id=member_id)
    points, pool, issued, pending = holdings
    price = Price(int(pool), int(issued))
    more = len(rows) > limit
    rows = rows[:limit]
    nearest: dt.datetime | None = lots[0][1] if lots else None
    return BalanceOut(
        member_id=member_id,
        points=points,
        points_value_fen=price.value_of(points),
        pending_points=int(pending or 0),
        price=price_out(price),
        vouchers_fen=sum(fen for fen, _ in lots),
        nearest_expiry=nearest,
        nearest_expiry_fen=sum(fen for fen, at in lots if at == nearest),
        activity=[_activity(*row) for row in rows],
        activity_next_before=rows[-1][0] if more and rows else None,
        capped_exits=[
            CappedExit(date=day, points=int(points), vouchers_fen=int(fen))
            for day, points, fen in capped
        ],
    )
