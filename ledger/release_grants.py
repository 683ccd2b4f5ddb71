"""One batch of the daily release for members, as a few set-based statements.

The batch is the next ``size`` holders after the release's cursor, taken as an id range
(lo, hi], so every statement of the batch speaks of the same members and a rerun after a crash
starts exactly after the last committed batch. The grant is computed by the database:

    burned = floor(points × fraction_bp / 10,000)
    value  = floor(burned × pool_fen / points_in_circulation)   (the day's price, fixed at start)

and a holder whose value would be 0 fen keeps all their points. ``points`` here leaves out the
holder's pending points (minted after the release's cutoff, ``ledger.hold``): one grouped read
of the batch's recent mint lots, joined to the batch. Floor on both steps means a
grant is never worth more than the points it burns; the fractions of a fen stay in the pool
(DESIGN.md "The ledger's rules", issue 12 "fair to every holder"). Until the price is defined a
point is worth one fen (``Price``), written here as the ratio 1/1.

PostgreSQL: one statement locks the batch's rows (``FOR UPDATE``, so a purchase committing
meanwhile is either wholly before or wholly after the grant), updates them, inserts the lots and
the ``voucher.granted`` events and returns the grants, in numeric arithmetic (no overflow).
SQLite (one writer; nothing else can change the rows inside the transaction): one read of the
grants and three writes (lots, events, members), each INSERT/UPDATE … SELECT over the same
derived table, in 64-bit integers, refused (``GrantOverflow``) for the batch where one holder's
``burned × pool`` could exceed 2**63 — one holder owning roughly all points of a pool of
billions of yuan, far beyond what an embedded ledger holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import events
from ledger.money import Price
from ledger.rules import BP

INT64_MAX = 2**63 - 1


class GrantOverflow(ArithmeticError):
    """A grant in this batch could exceed 64-bit integers on SQLite (see the module docstring)."""


@dataclass(frozen=True)
class Grant:
    member_id: int
    points_burned: int
    vouchers_fen: int


@dataclass(frozen=True)
class Batch:
    """What one batch granted, in member-id order; ``hi`` is the new cursor."""

    hi: int
    grants: list[Grant]


def price_ratio(price: Price) -> tuple[int, int]:
    """(pool_fen, points) to multiply and divide by; 1/1 until the price is defined."""
    return (price.pool_fen, price.points) if price.defined else (1, 1)


_BOUNDS = text(
    "SELECT max(id), max(points) FROM ("
    " SELECT id, points FROM members WHERE id > :lo AND points > 0 ORDER BY id LIMIT :size"
    ") AS b"
)

_PG_BATCH = text(
    """
WITH held AS (
    SELECT id, points FROM members
    WHERE id > :lo AND id <= :hi AND points > 0
    ORDER BY id
    FOR UPDATE
), pend AS (
    SELECT member_id, sum(points_left)::bigint AS p FROM mint_lots
    WHERE member_id > :lo AND member_id <= :hi AND minted_at > :cutoff AND points_left > 0
    GROUP BY member_id
), g AS (
    SELECT id, burned, div(burned::numeric * :pool, :pts)::bigint AS fen
    FROM (
        SELECT held.id, (held.points - coalesce(pend.p, 0)) * :fraction / :bp AS burned
        FROM held LEFT JOIN pend ON pend.member_id = held.id
    ) AS c
    WHERE burned > 0
), granted AS (
    UPDATE members AS m
    SET points = m.points - g.burned, vouchers_fen = m.vouchers_fen + g.fen
    FROM g
    WHERE m.id = g.id AND g.fen > 0
    RETURNING m.id, g.burned, g.fen
), lots AS (
    INSERT INTO voucher_lots
        (member_id, release_date, amount_fen, remaining_fen, granted_at, expires_at,
         expiring_notified)
    SELECT id, :day, fen, fen, :now, :expires, false FROM granted
), notices AS (
    INSERT INTO events (type, member_id, merchant_id, payload, created_at)
    SELECT :event_type, id, NULL,
           json_build_object('vouchers_fen', fen, 'points_burned', burned,
                             'expires_at', CAST(:expires_iso AS text),
                             'release_date', CAST(:day_iso AS text)),
           :now
    FROM granted ORDER BY id
)
SELECT id, burned, fen FROM granted ORDER BY id
"""
)

# SQLite: the grant as a derived table over the batch, used by each statement alike.
_SQLITE_GRANTS = (
    "SELECT id, burned, burned * :pool / :pts AS fen"
    " FROM (SELECT m.id, (m.points - coalesce(pend.p, 0)) * :fraction / :bp AS burned"
    "       FROM members AS m LEFT JOIN ("
    "           SELECT member_id, sum(points_left) AS p FROM mint_lots"
    "           WHERE member_id > :lo AND member_id <= :hi AND minted_at > :cutoff"
    "             AND points_left > 0 GROUP BY member_id"
    "       ) AS pend ON pend.member_id = m.id"
    "       WHERE m.id > :lo AND m.id <= :hi AND m.points > 0)"
    " WHERE burned > 0"
)
_SQLITE_SELECT = text(f"SELECT id, burned, fen FROM ({_SQLITE_GRANTS}) WHERE fen > 0 ORDER BY id")
_SQLITE_LOTS = text(
    "INSERT INTO voucher_lots (member_id, release_date, amount_fen, remaining_fen, granted_at,"
    " expires_at, expiring_notified)"
    f" SELECT id, :day, fen, fen, :now, :expires, 0 FROM ({_SQLITE_GRANTS}) WHERE fen > 0"
)
_SQLITE_EVENTS = text(
    "INSERT INTO events (type, member_id, merchant_id, payload, created_at)"
    " SELECT :event_type, id, NULL, json_object('vouchers_fen', fen, 'points_burned', burned,"
    " 'expires_at', :expires_iso, 'release_date', :day_iso), :now"
    f" FROM ({_SQLITE_GRANTS}) WHERE fen > 0 ORDER BY id"
)
_SQLITE_MEMBERS = text(
    "UPDATE members SET points = points - g.burned, vouchers_fen = vouchers_fen + g.fen"
    f" FROM ({_SQLITE_GRANTS}) AS g WHERE members.id = g.id AND g.fen > 0"
)


def stamp(value: dt.datetime) -> str:
    """A naive-UTC datetime as SQLAlchemy's SQLite DateTime stores it (so reads compare equal)."""
    return value.isoformat(sep=" ", timespec="microseconds")


async def grant_batch(
    session: AsyncSession,
    *,
    day: dt.date,
    lo: int,
    size: int,
    fraction_bp: int,
    price: Price,
    now: dt.datetime,
    expires: dt.datetime,
    cutoff: dt.datetime,
) -> Batch | None:
    """Grant the next ``size`` holders after member id ``lo``; None when no holder is left.

    Points minted after ``cutoff`` (naive UTC) are pending (``ledger.hold``): the grant burns
    the fraction of the points a holder has beyond them.

    Writes the members' balances, one voucher lot and one ``voucher.granted`` event per granted
    member; the caller posts the journal entry for the returned grants in the same transaction.
    Raises ``GrantOverflow`` (SQLite only) as described in the module docstring.
    """
    hi, top = (await session.execute(_BOUNDS, {"lo": lo, "size": size})).one()
    if hi is None:
        return None
    pool, pts = price_ratio(price)
    params: dict[str, object] = {
        "lo": lo,
        "hi": hi,
        "pool": pool,
        "pts": pts,
        "fraction": fraction_bp,
        "bp": BP,
        "event_type": events.VOUCHER_GRANTED,
        "expires_iso": expires.isoformat(),
        "day_iso": day.isoformat(),
    }
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        rows = (
            await session.execute(
                _PG_BATCH,
                {**params, "day": day, "now": now, "expires": expires, "cutoff": cutoff},
            )
        ).all()
    else:
        if int(top) * fraction_bp > INT64_MAX or (int(top) * fraction_bp // BP) * pool > INT64_MAX:
            raise GrantOverflow(
                f"members {lo + 1}..{hi}: a grant could exceed 64-bit integers on SQLite"
            )
        params |= {
            "day": day.isoformat(),
            "now": stamp(now),
            "expires": stamp(expires),
            "cutoff": stamp(cutoff),
        }
        rows = (await session.execute(_SQLITE_SELECT, params)).all()
        if rows:
            await session.execute(_SQLITE_LOTS, params)
            await session.execute(_SQLITE_EVENTS, params)
            await session.execute(_SQLITE_MEMBERS, params)
    return Batch(int(hi), [Grant(int(i), int(b), int(f)) for i, b, f in rows])
