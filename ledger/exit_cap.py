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
trim, one read and four set-based writes (``_write``) plus one journal entry
(``release:<day>:members:<lo+1>-<hi>:capped``) in the batch's transaction, so it shares the
batch's idempotency and resumption. Members only: merchants' points have no lots.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Float, TextClause, bindparam, cast, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import events, journal, mint_lots
from ledger.journal import FEN, POINTS, Posting
from ledger.money import Price
from ledger.release_grants import stamp
from ledger.rules import BP
from ledger.schema import MintLot, Release

_lots = MintLot.metadata.tables[MintLot.__tablename__]


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
        # Pending lots (ledger.hold) wait for their hold to end.
        or_(_lots.c.minted_at.is_(None), _lots.c.minted_at <= bindparam("cutoff")),
        # A generous prefilter in floating point; ``reached`` decides exactly.
        cast(_lots.c.mint_pool_fen, Float) * bindparam("k", type_=Float)
        <= cast(_lots.c.mint_points, Float),
    )
    .order_by(_lots.c.member_id, _lots.c.id)
)


# Each write is one statement over the batch, its rows passed as one JSON parameter (a list of
# objects) and read as a table: json_each on SQLite, json_to_recordset on PostgreSQL.
def _rows(dialect: str, param: str, columns: tuple[str, ...]) -> str:
    if dialect == "postgresql":
        typed = ", ".join(f"{c} bigint" for c in columns)
        return f"(SELECT * FROM json_to_recordset(CAST(:{param} AS json)) AS r({typed}))"
    picked = ", ".join(f"json_extract(value, '$.{c}') AS {c}" for c in columns)
    return f"(SELECT {picked} FROM json_each(:{param}))"


def _statements(dialect: str) -> tuple[TextClause, ...]:
    lots = _rows(dialect, "lots", ("id", "points", "fen"))
    per = _rows(dialect, "per", ("member_id", "points", "fen"))
    payload = (
        "json_build_object('vouchers_fen', c.fen, 'points_burned', c.points,"
        " 'expires_at', CAST(:expires_iso AS text), 'release_date', CAST(:day_iso AS text),"
        " 'capped', true)"
        if dialect == "postgresql"
        else "json_object('vouchers_fen', c.fen, 'points_burned', c.points,"
        " 'expires_at', :expires_iso, 'release_date', :day_iso, 'capped', json('true'))"
    )
    return (
        text(
            "UPDATE mint_lots SET points_left = 0, capped_on = :day, capped_points = c.points,"
            f" capped_fen = c.fen FROM {lots} AS c"
            " WHERE mint_lots.id = c.id"
        ),
        text(
            "UPDATE members SET points = members.points - c.points,"
            f" vouchers_fen = members.vouchers_fen + c.fen FROM {per} AS c"
            " WHERE members.id = c.member_id"
        ),
        # The day's lot may exist already (the release's own grant): the vouchers join it.
        text(
            "INSERT INTO voucher_lots (member_id, release_date, amount_fen, remaining_fen,"
            " granted_at, expires_at, expiring_notified)"
            f" SELECT c.member_id, :day, c.fen, c.fen, :now, :expires, false FROM {per} AS c"
            " WHERE true ON CONFLICT (member_id, release_date) DO UPDATE SET"
            " amount_fen = voucher_lots.amount_fen + excluded.amount_fen,"
            " remaining_fen = voucher_lots.remaining_fen + excluded.remaining_fen"
        ),
        text(
            "INSERT INTO events (type, member_id, merchant_id, payload, created_at)"
            f" SELECT :event_type, c.member_id, NULL, {payload}, :now FROM {per} AS c"
            " ORDER BY c.member_id"
        ),
    )


_STATEMENTS = {name: _statements(name) for name in ("postgresql", "sqlite")}


async def _write(
    session: AsyncSession,
    lots: list[dict[str, int]],
    capped: Capped,
    *,
    day: dt.date,
    now: dt.datetime,
    expires: dt.datetime,
) -> None:
    """The lots, members, voucher lots and events of one batch's capped exits: four statements."""
    dialect = session.get_bind().dialect.name
    params: dict[str, object] = {
        "lots": json.dumps(lots),
        "per": json.dumps(
            [{"member_id": m, "points": p, "fen": f} for m, p, f in capped.per_member]
        ),
        "event_type": events.VOUCHER_GRANTED,
        "expires_iso": expires.isoformat(),
        "day_iso": day.isoformat(),
    }
    if dialect == "postgresql":
        params |= {"day": day, "now": now, "expires": expires}
    else:
        params |= {"day": day.isoformat(), "now": stamp(now), "expires": stamp(expires)}
    for statement in _STATEMENTS["postgresql" if dialect == "postgresql" else "sqlite"]:
        await session.execute(statement, params)


async def convert(
    session: AsyncSession,
    release: Release,
    *,
    lo: int,
    hi: int,
    now: dt.datetime,
    expires: dt.datetime,
    shard: int,
    cutoff: dt.datetime,
) -> Capped:
    """Trim members (lo, hi]'s lots to their points, then convert the lots that reached the cap.

    ``release`` is the day's row (its price, its cap; updated with the totals). Adds the
    vouchers to the member's lot of the day (made by the release's own grant or here), posts one
    journal entry and one ``voucher.granted`` event per member with ``"capped": true``. Lots
    minted after ``cutoff`` (naive UTC) are pending (``ledger.hold``) and left alone.
    """
    await mint_lots.trim(session, lo, hi)
    if release.exit_cap_multiple_bp <= 0:
        return Capped([])
    price = Price(release.price_pool_fen, release.price_points)
    pool, pts = (price.pool_fen, price.points) if price.defined else (1, 1)
    k = release.exit_cap_multiple_bp * pts / (pool * BP) * (1 - 1e-9)
    rows = (
        await session.execute(_CANDIDATES, {"lo": lo, "hi": hi, "k": k, "cutoff": cutoff})
    ).all()
    lots: list[dict[str, int]] = []
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for lot_id, member_id, left, mint_pool, mint_pts in rows:
        if not reached(price, int(mint_pool), int(mint_pts), release.exit_cap_multiple_bp):
            continue
        fen = vouchers_for(int(left), price, release.exit_cap_share_bp)
        if fen <= 0:
            continue
        lots.append({"id": int(lot_id), "points": int(left), "fen": fen})
        totals[int(member_id)][0] += int(left)
        totals[int(member_id)][1] += fen
    if not lots:
        return Capped([])
    capped = Capped([(m, p, f) for m, (p, f) in sorted(totals.items())])
    day = release.release_date
    await _write(session, lots, capped, day=day, now=now, expires=expires)
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
