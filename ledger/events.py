"""The ordered event feed that consumers (the bot) read by cursor.

Event ids are handed out at insert, and on PostgreSQL concurrent transactions commit out of id
order, so a reader paging by id could step past an event that commits late and never see it.
Readers page by ``seq`` instead, which a sequencer assigns after commit, under a lock on one
row, so ``seq`` only ever grows in the order readers can observe. The id stays the dedupe key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.db import Bound, Conn, Database, Statement, column_params
from ledger.models import EventOut, EventsPage
from ledger.schema import Event, FeedState

POINTS_EARNED = "points.earned"
VOUCHER_GRANTED = "voucher.granted"
VOUCHER_REDEEMED = "voucher.redeemed"
VOUCHER_EXPIRING = "voucher.expiring"
REDEMPTION_UNDONE = "voucher.redemption_undone"
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
            ids = (
                await session.scalars(
                    select(Event.id)
                    .where(Event.seq.is_(None))
                    .order_by(Event.id)
                    .limit(SEQUENCE_BATCH)
                )
            ).all()
            if not ids:
                return total
            await session.execute(
                update(Event),
                [{"id": event_id, "seq": last + n} for n, event_id in enumerate(ids, start=1)],
            )
            await session.execute(
                update(FeedState).where(FeedState.id == 1).values(last_seq=last + len(ids))
            )
        total += len(ids)
        if len(ids) < SEQUENCE_BATCH:
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
