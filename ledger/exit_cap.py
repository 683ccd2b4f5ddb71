"""The exit cap (封顶) of the daily release: DESIGN.md "The seeds' other rules", issue 13.

A mint lot (``mint_lots``) whose points the day's price makes worth at least ``multiple_bp`` /
10,000 times their mint value is converted: all its points are burned and

    vouchers = floor(floor(points_left × pool / points) × share_bp / 10,000)   fen

go to the member, the rest of the lot's value staying in the pool (the price rises for everyone
else). "Worth the multiple" is compared as exact ratios, without rounding:

    pool × mint_points × 10,000 >= multiple_bp × mint_pool_fen × points

so a lot converts exactly when today's price reaches the multiple of its mint price, whatever
its size. A lot whose share would be 0 fen keeps its points (as the release does). Runs inside
each member batch of the fraction release, after its grants, over the batch's id range: one
trim, one read and five set-based writes (executemany) plus one journal entry
(``release:<day>:members:<lo+1>-<hi>:capped``) in the batch's transaction, so it shares the
batch's idempotency and resumption. Members only: merchants' points have no lots.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Float, bindparam, cast, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import events, journal, mint_lots
from ledger.db import insert_on_conflict
from ledger.journal import FEN, POINTS, Posting
from ledger.money import Price
from ledger.rules import BP
from ledger.schema import Event, Member, MintLot, Release, VoucherLot

_lots = MintLot.metadata.tables[MintLot.__tablename__]
_members = Member.metadata.tables[Member.__tablename__]
_vouchers = VoucherLot.metadata.tables[VoucherLot.__tablename__]
_events = Event.metadata.tables[Event.__tablename__]


def reached(price: Price, mint_pool_fen: int, mint_points: int, multiple_bp: int) -> bool:
    """Whether ``price`` is at least ``multiple_bp`` / 10,000 times the mint price ratio."""
    pool, pts = (price.pool_fen, price.points) if price.defined else (1, 1)
    return pool * mint_points * BP >= multiple_bp * mint_pool_fen * pts


def vouchers_for(points: int, price: Price, share_bp: int) -> int:
    """Fen a capped lot of ``points`` becomes: ``share_bp`` of their value at ``price``, floored."""
    return price.value_of(points) * share_bp // BP


@dataclass(frozen=True)
class Capped:
    """What one batch converted: per member (points burned, vouchers fen), in id order."""

    per_member: list[tuple[int, int, int]]

    @property
    def points(self) -> int:
        return sum(p for _m, p, _f in self.per_member)

    @property
    def fen(self) -> int:
        return sum(f for _m, _p, f in self.per_member)


_CANDIDATES = (
    select(
        _lots.c.id,
        _lots.c.member_id,
        _lots.c.points_left,
        _lots.c.mint_pool_fen,
        _lots.c.mint_points,
    )
    .where(
        _lots.c.member_id > bindparam("lo"),
        _lots.c.member_id <= bindparam("hi"),
        _lots.c.points_left > 0,
        # A generous prefilter in floating point; ``reached`` decides exactly.
        cast(_lots.c.mint_pool_fen, Float) * bindparam("k", type_=Float)
        <= cast(_lots.c.mint_points, Float),
    )
    .order_by(_lots.c.member_id, _lots.c.id)
)
_CAP_LOT = (
    update(_lots)
    .where(_lots.c.id == bindparam("b_id"), _lots.c.points_left == bindparam("b_points"))
    .values(
        points_left=0,
        capped_on=bindparam("b_day"),
        capped_points=bindparam("b_points"),
        capped_fen=bindparam("b_fen"),
    )
)
_BURN = (
    update(_members)
    .where(_members.c.id == bindparam("b_id"))
    .values(
        points=_members.c.points - bindparam("b_points"),
        vouchers_fen=_members.c.vouchers_fen + bindparam("b_fen"),
    )
)


async def convert(
    session: AsyncSession,
    release: Release,
    *,
    lo: int,
    hi: int,
    now: dt.datetime,
    expires: dt.datetime,
    shard: int,
) -> Capped:
    """Trim members (lo, hi]'s lots to their points, then convert the lots that reached the cap.

    ``release`` is the day's row (its price, its cap; updated with the totals). Adds the
    vouchers to the member's lot of the day (made by the release's own grant or here), posts one
    journal entry and one ``voucher.granted`` event per member with ``"capped": true``.
    """
    await mint_lots.trim(session, lo, hi)
    if release.exit_cap_multiple_bp <= 0:
        return Capped([])
    price = Price(release.price_pool_fen, release.price_points)
    pool, pts = (price.pool_fen, price.points) if price.defined else (1, 1)
    k = release.exit_cap_multiple_bp * pts / (pool * BP) * (1 - 1e-9)
    rows = (await session.execute(_CANDIDATES, {"lo": lo, "hi": hi, "k": k})).all()
    lots: list[dict[str, object]] = []
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for lot_id, member_id, left, mint_pool, mint_pts in rows:
        if not reached(price, int(mint_pool), int(mint_pts), release.exit_cap_multiple_bp):
            continue
        fen = vouchers_for(int(left), price, release.exit_cap_share_bp)
        if fen <= 0:
            continue
        lots.append(
            {"b_id": lot_id, "b_points": int(left), "b_day": release.release_date, "b_fen": fen}
        )
        totals[int(member_id)][0] += int(left)
        totals[int(member_id)][1] += fen
    if not lots:
        return Capped([])
    capped = Capped([(m, p, f) for m, (p, f) in sorted(totals.items())])
    day = release.release_date
    await session.execute(_CAP_LOT, lots)
    await session.execute(
        _BURN, [{"b_id": m, "b_points": p, "b_fen": f} for m, p, f in capped.per_member]
    )
    upsert = insert_on_conflict(session, _vouchers)
    upsert = upsert.on_conflict_do_update(
        index_elements=[_vouchers.c.member_id, _vouchers.c.release_date],
        set_={
            "amount_fen": _vouchers.c.amount_fen + upsert.excluded.amount_fen,
            "remaining_fen": _vouchers.c.remaining_fen + upsert.excluded.remaining_fen,
        },
    )
    await session.execute(
        upsert,
        [
            {
                "member_id": m,
                "release_date": day,
                "amount_fen": f,
                "remaining_fen": f,
                "granted_at": now,
                "expires_at": expires,
                "expiring_notified": False,
            }
            for m, _p, f in capped.per_member
        ],
    )
    # Core, not the ORM's bulk insert (which spent 4x longer per row building objects).
    await session.execute(
        _events.insert(),
        [
            {
                "type": events.VOUCHER_GRANTED,
                "member_id": m,
                "merchant_id": None,
                "payload": {
                    "vouchers_fen": f,
                    "points_burned": p,
                    "expires_at": expires.isoformat(),
                    "release_date": day.isoformat(),
                    "capped": True,
                },
                "created_at": now,
            }
            for m, p, f in capped.per_member
        ],
    )
    postings: list[Posting] = []
    for m, p, f in capped.per_member:
        postings += [(journal.member_points(m), POINTS, -p), (journal.member_vouchers(m), FEN, f)]
    postings += [(journal.ISSUANCE, POINTS, capped.points), (journal.POOL, FEN, -capped.fen)]
    await journal.post(
        session,
        shard=shard,
        kind="release",
        ref=f"release:{day.isoformat()}:members:{lo + 1}-{hi}:capped",
        postings=postings,
        now=now,
    )
    release.capped_points += capped.points
    release.capped_fen += capped.fen
    release.points_burned += capped.points
    release.vouchers_fen += capped.fen
    return capped
