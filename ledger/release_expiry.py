"""Expiry of voucher lots and the "expiring soon" notices, a batch of members at a time.

Both walk the partial index of live lots (``remaining_fen > 0``) by expiry date, so a day's work
reads that day's lots, not the 90 days of history behind them; a batch takes the members of the
next ``size`` due lots and then handles every due lot of those members, so each member gets one
journal posting (expiry) or one ``voucher.expiring`` event (notices) per batch. Members are
locked before their lots, the order redemptions lock in (DESIGN.md "The ledger's rules": vouchers
expire after 90 days by default; "Notices at the alliance's scale": one warning per person).

The SQL is text so that it says ``remaining_fen > 0`` literally: SQLite uses a partial index
only for a query whose WHERE contains the index's own condition, not a bound parameter.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import events
from ledger.release_grants import stamp
from ledger.schema import Event

_STAMP = Event.created_at.type


def _for_ids(sql: str, *stamps: str) -> dict[str, TextClause]:
    """``sql`` per dialect, its ``{ids}`` a list of member ids: SQLite expands it in place
    (in-process, free); PostgreSQL takes one array parameter, so a 5,000-member batch is not
    5,000 parameters to parse and plan each time."""
    dated = [bindparam(name, type_=_STAMP) for name in stamps]
    return {
        "sqlite": text(sql.format(ids="IN :ids", by_member=_BY_MEMBER)).bindparams(
            bindparam("ids", expanding=True), *dated
        ),
        "postgresql": text(sql.format(ids="= ANY(:ids)", by_member="")).bindparams(
            bindparam("ids", type_=ARRAY(BigInteger())), *dated
        ),
    }


# SQLite would otherwise pick the live-lots index for the date range and read every due lot of
# the day for each batch of members (a million lots, 200 times); by member it reads only theirs.
_BY_MEMBER = "INDEXED BY ix_voucher_lots_member_expires"


def _pick(statements: dict[str, TextClause], session: AsyncSession) -> TextClause:
    return statements[session.get_bind().dialect.name]


_DUE_EXPIRY = text(
    "SELECT DISTINCT member_id FROM ("
    " SELECT member_id FROM voucher_lots WHERE remaining_fen > 0 AND expires_at <= :now"
    " ORDER BY expires_at, id LIMIT :size) AS due"
).bindparams(bindparam("now", type_=_STAMP))

_LOCK_MEMBERS = _for_ids("SELECT id FROM members WHERE id {ids} ORDER BY id FOR UPDATE")
_EXPIRED_PER_MEMBER = (
    "SELECT member_id, sum(remaining_fen) AS fen, count(*) AS lots FROM voucher_lots {by_member}"
    " WHERE member_id {ids} AND remaining_fen > 0 AND expires_at <= :now GROUP BY member_id"
)
_EXPIRED = _for_ids(f"{_EXPIRED_PER_MEMBER} ORDER BY member_id", "now")
_DEBIT_MEMBERS = _for_ids(
    "UPDATE members SET vouchers_fen = members.vouchers_fen - g.fen"
    f" FROM ({_EXPIRED_PER_MEMBER}) AS g WHERE members.id = g.member_id",
    "now",
)
_EMPTY_LOTS = _for_ids(
    "UPDATE voucher_lots {by_member} SET remaining_fen = 0"
    " WHERE member_id {ids} AND remaining_fen > 0 AND expires_at <= :now",
    "now",
)


@dataclass(frozen=True)
class Expired:
    """Per member: the fen that expired; and how many lots."""

    per_member: list[tuple[int, int]]
    lots: int


async def expire_batch(session: AsyncSession, *, now: dt.datetime, size: int) -> Expired | None:
    """Empty every lot past its expiry of the members owning the next ``size`` due lots and
    take the value off their balances; None when nothing is due. The caller posts the journal
    entry (value back to the pool) in the same transaction."""
    ids = [int(m) for m in (await session.scalars(_DUE_EXPIRY, {"now": now, "size": size}))]
    if not ids:
        return None
    ids.sort()
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_LOCK_MEMBERS["postgresql"], {"ids": ids})
    rows = (await session.execute(_pick(_EXPIRED, session), {"ids": ids, "now": now})).all()
    await session.execute(_pick(_DEBIT_MEMBERS, session), {"ids": ids, "now": now})
    await session.execute(_pick(_EMPTY_LOTS, session), {"ids": ids, "now": now})
    return Expired([(int(m), int(f)) for m, f, _n in rows], sum(int(n) for *_x, n in rows))


# Walked by (expires_at, id): one release's lots share one expiry instant, so the walk must not
# restart at that instant (it would reread every lot already announced, batch after batch).
_DUE_NOTICE = text(
    "SELECT member_id, expires_at, id FROM voucher_lots"
    " WHERE remaining_fen > 0 AND expires_at >= :after AND (expires_at, id) > (:after, :after_id)"
    " AND expires_at <= :horizon AND NOT expiring_notified ORDER BY expires_at, id LIMIT :size"
).bindparams(
    bindparam("after", type_=Event.created_at.type),
    bindparam("horizon", type_=Event.created_at.type),
)
_NOTICE_PER_MEMBER = _for_ids(
    "SELECT member_id, sum(remaining_fen), min(expires_at) FROM voucher_lots {by_member}"
    " WHERE member_id {ids} AND remaining_fen > 0 AND expires_at > :now"
    " AND expires_at <= :horizon AND NOT expiring_notified GROUP BY member_id ORDER BY member_id",
    "now",
    "horizon",
)
_MARK_NOTIFIED = _for_ids(
    "UPDATE voucher_lots {by_member} SET expiring_notified = :yes"
    " WHERE member_id {ids} AND remaining_fen > 0 AND expires_at > :now"
    " AND expires_at <= :horizon AND NOT expiring_notified",
    "now",
    "horizon",
)


Walk = tuple[dt.datetime, int]  # (expires_at, lot id) of the last lot looked at


async def notify_batch(
    session: AsyncSession, *, now: dt.datetime, horizon: dt.datetime, after: Walk, size: int
) -> tuple[int, Walk] | None:
    """One ``voucher.expiring`` event for each member owning one of the next ``size`` lots after
    ``after`` (by expiry, then id) that expire in (now, horizon] and were not announced, covering
    all such lots of that member. Returns (events emitted, where the walk stands), or None when
    none are left. Start the walk at ``(now, 2**62)``: lots expiring at ``now`` are expiry's."""
    picked = (
        await session.execute(
            _DUE_NOTICE,
            {"after": after[0], "after_id": after[1], "horizon": horizon, "size": size},
        )
    ).all()
    if not picked:
        return None
    ids = sorted({int(m) for m, _e, _i in picked})
    rows = await session.execute(
        _pick(_NOTICE_PER_MEMBER, session), {"ids": ids, "now": now, "horizon": horizon}
    )
    notices = [
        (int(member_id), int(fen), _as_datetime(first).isoformat())
        for member_id, fen, first in rows.all()
    ]
    if notices:
        await _emit_expiring(session, notices, now)
    await session.execute(
        _pick(_MARK_NOTIFIED, session), {"ids": ids, "now": now, "horizon": horizon, "yes": True}
    )
    return len(notices), (_as_datetime(picked[-1][1]), int(picked[-1][2]))


# The events of a batch go in as one INSERT…SELECT over the batch passed as one parameter:
# building a million ORM insert rows cost more than everything else the notices do.
_SQLITE_EMIT = text(
    "INSERT INTO events (type, member_id, merchant_id, payload, created_at)"
    " SELECT :type, json_extract(value, '$[0]'), NULL, json_object('vouchers_fen',"
    " json_extract(value, '$[1]'), 'expires_at', json_extract(value, '$[2]')), :now"
    " FROM json_each(:rows)"
)
_PG_EMIT = text(
    "INSERT INTO events (type, member_id, merchant_id, payload, created_at)"
    " SELECT :type, u.m, NULL, json_build_object('vouchers_fen', u.f, 'expires_at', u.e), :now"
    " FROM unnest(CAST(:ms AS bigint[]), CAST(:fs AS bigint[]), CAST(:es AS text[]))"
    " AS u(m, f, e) ORDER BY u.m"
)


async def _emit_expiring(
    session: AsyncSession, notices: list[tuple[int, int, str]], now: dt.datetime
) -> None:
    """One ``voucher.expiring`` event per (member, fen, first expiry as ISO text)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            _PG_EMIT,
            {
                "type": events.VOUCHER_EXPIRING,
                "now": now,
                "ms": [m for m, _f, _e in notices],
                "fs": [f for _m, f, _e in notices],
                "es": [e for _m, _f, e in notices],
            },
        )
    else:
        await session.execute(
            _SQLITE_EMIT,
            {"type": events.VOUCHER_EXPIRING, "now": stamp(now), "rows": json.dumps(notices)},
        )


def _as_datetime(value: Any) -> dt.datetime:
    """An aggregate over a DateTime column comes back from SQLite as its stored text."""
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))
