"""The ordered event feed that consumers (the bot) read by cursor.

Event ids are handed out at insert, and on PostgreSQL concurrent transactions commit out of id
order, so a reader paging by id could step past an event that commits late and never see it.
Readers page by ``seq`` instead, which a sequencer assigns after commit, under a lock on one
row, so ``seq`` only ever grows in the order readers can observe. The id stays the dedupe key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import CursorResult, case, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.db import Bound, Conn, Database, Statement, column_params
from ledger.models import EventOut, EventsPage
from ledger.schema import Event, FeedState

POINTS_EARNED = "points.earned"
VOUCHER_GRANTED = "voucher.granted"
VOUCHER_REDEEMED = "voucher.redeemed"
VOUCHER_EXPIRING = "voucher.expiring"
REDEMPTION_UNDONE = "voucher.redemption_undone"
PURCHASE_REFUNDED = "purchase.refunded"
UNUSUAL_VOLUME = "merchant.unusual_volume"  # for the admins (ledger/unusual.py)
EVENT_TYPES = (POINTS_EARNED, VOUCHER_GRANTED, VOUCHER_REDEEMED, VOUCHER_EXPIRING)

SEQUENCE_BATCH = 5000

_events = Event.metadata.tables[Event.__tablename__]
_EMIT = Statement(insert(_events).values(column_params(_events, skip=("id", "seq"))))


async def emit(
    session: Conn,
    type_: str,
    *,
    now: dt.datetime,
    member_id: int | None = None,
    merchant_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    bound = emission(type_, now=now, member_id=member_id, merchant_id=merchant_id, payload=payload)
    await bound.rows(session)


def emission(
    type_: str,
    *,
    now: dt.datetime,
    member_id: int | None = None,
    merchant_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> Bound:
    """``emit``, bound to run later in a ``db.batch`` with other statements."""
    return _EMIT.bind(
        p_type=type_,
        p_member_id=member_id,
        p_merchant_id=merchant_id,
        p_payload=payload or {},
        p_created_at=now,
    )


async def emit_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(Event), rows)


_NUMBER = text(
    "UPDATE events SET seq = :last + n.rn FROM ("
    " SELECT id, row_number() OVER (ORDER BY id) AS rn FROM ("
    "  SELECT id FROM events WHERE seq IS NULL ORDER BY id LIMIT :size) AS due"
    ") AS n WHERE events.id = n.id"
)


async def _has_unsequenced(db: Database) -> bool:
    async with db.read() as session:
        first = await session.scalar(select(Event.id).where(Event.seq.is_(None)).limit(1))
    return first is not None


async def sequence_pending(db: Database) -> int:
    """Give feed positions to committed events that have none yet; returns how many."""
    if not await _has_unsequenced(db):
        return 0
    total = 0
    while True:
        async with db.write() as session:
            last = await session.scalar(
                select(FeedState.last_seq).where(FeedState.id == 1).with_for_update()
            )
            assert last is not None
            # One statement per batch (a release emits a million events at once): positions
            # last+1, last+2, … in id order, over the partial index of unsequenced events.
            numbered = await session.execute(_NUMBER, {"last": last, "size": SEQUENCE_BATCH})
            count = cast(CursorResult[Any], numbered).rowcount
            if not count:
                return total
            await session.execute(
                update(FeedState).where(FeedState.id == 1).values(last_seq=last + count)
            )
        total += count
        if count < SEQUENCE_BATCH:
            return total


async def read_feed(db: Database, after: int, limit: int) -> EventsPage:
    await sequence_pending(db)
    async with db.read() as session:
        rows = (
            await session.scalars(
                select(Event).where(Event.seq > after).order_by(Event.seq).limit(limit)
            )
        ).all()
    events = [
        EventOut(
            id=r.id,
            seq=r.seq or 0,
            type=r.type,
            member_id=r.member_id,
            merchant_id=r.merchant_id,
            payload=r.payload,
            created_at=r.created_at,
        )
        for r in rows
    ]
    return EventsPage(events=events, next_after=events[-1].seq if events else after)


PRUNE_BATCH = 5000


async def prune(db: Database, *, before: dt.datetime, batch: int = PRUNE_BATCH) -> int:
    """Delete events created before ``before`` (naive UTC), oldest first; returns how many.

    Bounded databases (issue 12, DESIGN.md "Notices at the alliance's scale"): readers keep
    their own cursor (``seq``) and dedupe by event id, so what must stay is

    - every event not yet sequenced (it has no feed position yet; it would be lost unread);
    - the newest event, always: SQLite gives a new row the largest id plus one, so an emptied
      table would hand out ids again, and a reader would take the new events for ones it sent.

    Each batch deletes the oldest run of events that all qualify, as one ``DELETE … WHERE id <=``
    in its own transaction, and the walk stops at the first event that must stay, so it never
    scans the window it keeps. A reader whose cursor lies behind the pruned range simply
    continues with the oldest event left (readers are expected within the retention window).
    """
    total = 0
    while True:
        async with db.write() as session:
            newest = await session.scalar(select(func.max(Event.id)))
            rows = (
                await session.execute(
                    select(Event.id, Event.seq, Event.created_at).order_by(Event.id).limit(batch)
                )
            ).all()
            last = None
            for event_id, seq, created_at in rows:
                if seq is None or created_at >= before or event_id == newest:
                    break
                last = event_id
            if last is None:
                return total
            deleted = await session.execute(delete(Event).where(Event.id <= last))
            total += cast(CursorResult[Any], deleted).rowcount
            # verify must know events older than this may be gone (ledger/verify_rows.py).
            await session.execute(
                update(FeedState)
                .where(FeedState.id == 1)
                .values(
                    pruned_before=case(
                        (FeedState.pruned_before.is_(None), before),
                        (FeedState.pruned_before < before, before),
                        else_=FeedState.pruned_before,
                    )
                )
            )
        if last != rows[-1][0]:
            return total
