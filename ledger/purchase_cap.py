"""The per-day purchase cap (issue 11, insider limits; DESIGN.md "Merchants and their money").

A member earns at one merchant at most ``Rules.purchase_cap_count`` purchases and at most
``Rules.purchase_cap_fen`` fen of purchases per local day (each 0: no limit); the paid part of a
redemption is a purchase and counts too. The purchase that would go past either is refused with
``purchase_cap_reached`` (409): the cap-th purchase of the day is booked, the next is not, and a
bill that brings the day's fen exactly to the cap is booked, one fen more is not.

The day's count and fen ride along the purchase's idempotency claim as two scalar subqueries
over the purchases' (member_id, merchant_id, created_at) index, so the cap costs no round trip.
Every purchase through a till needs the member's live code and consumes it (one live code per
member), so one member's purchases at one merchant cannot race past the cap.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ScalarSelect, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.errors import PurchaseCapReached
from ledger.rules import Rules
from ledger.schema import Purchase

_purchases = Purchase.metadata.tables[Purchase.__tablename__]


def _where() -> tuple[Any, ...]:
    return (
        _purchases.c.member_id == bindparam("member_id"),
        _purchases.c.merchant_id == bindparam("merchant_id"),
        _purchases.c.created_at >= bindparam("day_start", type_=_purchases.c.created_at.type),
        _purchases.c.created_at < bindparam("day_end", type_=_purchases.c.created_at.type),
    )


def subqueries() -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """The day's purchases (count, fen) of ``:member_id`` at ``:merchant_id`` in
    [``:day_start``, ``:day_end``), as scalar subqueries to ride along another statement."""
    return (
        select(func.count()).select_from(_purchases).where(*_where()).scalar_subquery(),
        select(func.coalesce(func.sum(_purchases.c.amount_fen), 0))
        .where(*_where())
        .scalar_subquery(),
    )


def refuse_if(rules: Rules, count: int, fen: int, amount_fen: int, merchant_id: int) -> None:
    """Raises ``PurchaseCapReached`` when a purchase of ``amount_fen`` after ``count`` purchases
    of ``fen`` in all today would pass either cap."""
    if rules.purchase_cap_count and count >= rules.purchase_cap_count:
        raise PurchaseCapReached(
            "this member reached today's purchases at this merchant",
            merchant_id=merchant_id,
            cap_count=rules.purchase_cap_count,
        )
    if rules.purchase_cap_fen and fen + amount_fen > rules.purchase_cap_fen:
        raise PurchaseCapReached(
            "this member reached today's purchase amount at this merchant",
            merchant_id=merchant_id,
            cap_fen=rules.purchase_cap_fen,
            left_fen=max(rules.purchase_cap_fen - fen, 0),
        )


_COUNT, _FEN = subqueries()


async def check(
    session: AsyncSession,
    rules: Rules,
    day: tuple[dt.datetime, dt.datetime],
    member_id: int,
    merchant_id: int,
    amount_fen: int,
) -> None:
    """``refuse_if`` with the day's figures read now (the paid part of a redemption)."""
    if not (rules.purchase_cap_count or rules.purchase_cap_fen):
        return
    count, fen = (
        await session.execute(
            select(_COUNT, _FEN),
            {
                "member_id": member_id,
                "merchant_id": merchant_id,
                "day_start": day[0],
                "day_end": day[1],
            },
        )
    ).one()
    refuse_if(rules, int(count), int(fen), amount_fen, merchant_id)
