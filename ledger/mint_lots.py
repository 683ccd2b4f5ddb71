"""Mint lots: the points each purchase minted a member, and the price they were minted at.

The exit cap (issue 13, ``exit_cap``) needs to know what a member's points were worth when they
were minted. Every purchase that mints member points adds a lot; whatever burns a member's
points (the daily release) then ``trim``s the member's lots oldest first (FIFO) until they hold
exactly the member's points again, so the lots always say which purchases the points still
held came from. Points held before lots existed were given lots by migration 0006 the same way.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, case, insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.db import Bound, Conn, Statement
from ledger.money import Price, PurchaseSplit
from ledger.schema import MintLot

_lots = MintLot.metadata.tables[MintLot.__tablename__]

# Parameter names are the lot's own: the statement runs batched with a purchase's other ones.
_MINT = Statement(
    insert(_lots).values(
        member_id=bindparam("lot_member_id", type_=_lots.c.member_id.type),
        purchase_id=bindparam("lot_purchase_id", type_=_lots.c.purchase_id.type),
        points_minted=bindparam("lot_points", type_=_lots.c.points_minted.type),
        points_left=bindparam("lot_points", type_=_lots.c.points_left.type),
        mint_pool_fen=bindparam("lot_pool_fen", type_=_lots.c.mint_pool_fen.type),
        mint_points=bindparam("lot_price_points", type_=_lots.c.mint_points.type),
        capped_points=0,
        capped_fen=0,
        minted_at=bindparam("lot_minted_at", type_=_lots.c.minted_at.type),
    )
)


def minting(
    member_id: int, purchase_id: int, points: int, price: Price, now: dt.datetime
) -> tuple[Bound, ...]:
    """The lot of a purchase that minted ``points`` (points) at ``price`` (the price the purchase
    was booked at) at ``now`` (naive UTC; the lot is pending until the hold ends), bound to run
    with the purchase's statements; none when it minted nothing."""
    if points <= 0:
        return ()
    pool, pts = (price.pool_fen, price.points) if price.defined else (1, 1)
    return (
        _MINT.bind(
            lot_member_id=member_id,
            lot_purchase_id=purchase_id,
            lot_points=points,
            lot_pool_fen=pool,
            lot_price_points=pts,
            lot_minted_at=now,
        ),
    )


async def record(
    conn: Conn,
    member_id: int,
    purchase_id: int,
    split: PurchaseSplit,
    price: Price,
    now: dt.datetime,
) -> None:
    """``minting`` run now, for a purchase booked in ``conn`` (the paid part of a redemption)."""
    for lot in minting(member_id, purchase_id, split.member_points, price, now):
        await lot.rows(conn)


# For every member of (lo, hi] whose lots hold more than their points, the excess is taken from
# the oldest lots first: a lot gives what the excess leaves after the older lots, at most all.
_TRIM = text(
    """
UPDATE mint_lots SET points_left = mint_lots.points_left - t.take
FROM (
    SELECT l.id,
           CASE WHEN e.excess - l.older >= l.points_left THEN l.points_left
                ELSE e.excess - l.older END AS take
    FROM (
        SELECT id, member_id, points_left,
               SUM(points_left) OVER (PARTITION BY member_id ORDER BY id) - points_left AS older
        FROM mint_lots
        WHERE member_id > :lo AND member_id <= :hi AND points_left > 0
    ) AS l
    JOIN (
        SELECT k.member_id, k.held - m.points AS excess
        FROM (
            SELECT member_id, SUM(points_left) AS held FROM mint_lots
            WHERE member_id > :lo AND member_id <= :hi AND points_left > 0
            GROUP BY member_id
        ) AS k
        JOIN members AS m ON m.id = k.member_id
    ) AS e ON e.member_id = l.member_id
    WHERE e.excess > l.older
) AS t
WHERE mint_lots.id = t.id
"""
)


async def trim(session: AsyncSession, lo: int, hi: int) -> None:
    """Burn lots oldest first so members (lo, hi]'s lots hold no more than their points.

    One statement for the whole id range; the caller holds the members' rows (the release's
    batch lock), so no purchase changes their points meanwhile.
    """
    await session.execute(_TRIM, {"lo": lo, "hi": hi})


async def take_back(session: AsyncSession, member_id: int, purchase_id: int, points: int) -> None:
    """Points minted on ``purchase_id`` were taken back (an undone redemption, issue 11): that
    purchase's own lot gives them up first, then the member's lots are trimmed oldest first, so
    lots never hold more than ``members.points`` (``verify`` checks it). Call after the
    member's points were lowered, in the same transaction."""
    await session.execute(
        update(MintLot)
        .where(MintLot.member_id == member_id, MintLot.purchase_id == purchase_id)
        .values(
            points_left=case(
                (MintLot.points_left > points, MintLot.points_left - points), else_=0
            )
        )
    )
    await trim(session, member_id - 1, member_id)
