"""The outbox's SQL: putting messages in, claiming them for sending, recording what happened.

Rows are deduplicated by key (a ledger event id, or broadcast and chat), so reading the event
feed twice, or a crash between reading and saving the cursor, never says anything twice.

A row's life: ``pending`` → ``sending`` (claimed; ``claimed_at`` says since when) → one of
``sent``, ``blocked`` (the chat blocked the bot), ``failed`` (Telegram refused it, or network
retries ran out) or ``skipped`` (not sent on purpose: notices turned off, no content any more);
or back to ``pending`` with a later ``not_before`` to be retried. Every row ends in exactly one
of those states, so a broadcast's counts are a ``GROUP BY state`` over its rows (indexed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage import cursors
from bot.storage.chats import utcnow
from bot.storage.schema import Chat, Cursor, OutboxMessage

# Priorities, most urgent first (issue 12: receipts, then expiring vouchers, then digests).
NOTICE = 0  # receipts: what the person just did
EXPIRING = 1  # expiry warnings, gathered per person
DIGEST = 2  # voucher digests, one per person per period
BULK = 3  # broadcasts

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
BLOCKED = "blocked"
FAILED = "failed"
SKIPPED = "skipped"
HELD = "held"  # waits (until ``not_before``) to be gathered with its person's others
GATHERED = "gathered"  # told in a gathered message (whose dedupe key is in ``last_error``)
FINAL_STATES = (SENT, BLOCKED, FAILED, SKIPPED, GATHERED)

T = TypeVar("T")

_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Outgoing:
    channel: str
    address: str
    method: str  # "notice" (neutral: payload {"kind", "fields"}), or a Bot API method
    payload: dict[str, Any]  # the notice, or the method's parameters except the recipient
    kind: str  # notice | broadcast
    dedupe_key: str | None = None
    priority: int = NOTICE
    broadcast_id: int | None = None
    state: str = PENDING  # or HELD, to be gathered into one message at ``not_before``
    not_before: dt.datetime | None = None  # None: now


async def enqueue(
    session: AsyncSession, messages: list[Outgoing], created_at: dt.datetime | None = None
) -> int:
    """Add messages in the caller's transaction; returns how many were new (not duplicates).
    ``created_at`` (naive UTC; pruning reads it) defaults to now; a message is due at its own
    ``not_before``, else now (the sender's clock)."""
    if not messages:
        return 0
    bind = session.bind
    postgres = bind is not None and bind.dialect.name == "postgresql"
    builder = postgresql.insert if postgres else sqlite.insert
    now = utcnow()
    created_at = created_at or now
    stmt = builder(OutboxMessage).on_conflict_do_nothing(index_elements=["dedupe_key"])
    result = await session.execute(
        stmt.returning(OutboxMessage.id),
        [
            {
                "channel": m.channel,
                "address": m.address,
                "dedupe_key": m.dedupe_key,
                "kind": m.kind,
                "priority": m.priority,
                "broadcast_id": m.broadcast_id,
                "method": m.method,
                "payload": m.payload,
                "state": m.state,
                "attempts": 0,
                "not_before": m.not_before or now,
                "created_at": created_at,
            }
            for m in messages
        ],
    )
    return len(result.all())


@dataclass(frozen=True)
class Claimed:
    """A row taken for sending; ``method`` and ``payload`` may be filled in later by a resolver
    (a broadcast row carries its content in the broadcasts table, not per row)."""

    id: int
    channel: str
    address: str
    kind: str
    priority: int
    broadcast_id: int | None
    method: str
    payload: dict[str, Any]
    attempts: int

    @property
    def key(self) -> tuple[str, str]:
        """The recipient's chat: (channel, address)."""
        return self.channel, self.address


@dataclass(frozen=True)
class Outcome:
    """What became of a claimed row. ``state`` is a final state, or ``pending`` to try again
    at ``not_before`` (``attempts`` counts the failed tries so far)."""

    row: Claimed
    state: str
    error: str | None = None
    not_before: dt.datetime | None = None
    attempts: int = 0


@dataclass(frozen=True)
class ChatState:
    blocked: bool
    notices: bool
    locale: str = "zh_Hans"  # what a neutral notice is rendered in


def _chunks(ids: Sequence[T]) -> list[Sequence[T]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


async def claim(
    session: AsyncSession, limit: int, now: dt.datetime | None = None, channel: str | None = None
) -> list[Claimed]:
    """Take up to ``limit`` due rows (of ``channel``'s chats, when given: each channel has its
    own sender), most urgent first, and mark them ``sending``.

    On PostgreSQL the rows are picked with ``FOR UPDATE SKIP LOCKED``, so claimers never wait on
    each other or take the same row; on SQLite the transaction's write lock does the same.
    """
    now = now or utcnow()
    due = select(OutboxMessage.id).where(
        OutboxMessage.state == PENDING, OutboxMessage.not_before <= now
    )
    if channel is not None:
        due = due.where(OutboxMessage.channel == channel)
    due = (
        due.order_by(OutboxMessage.priority, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(state=SENDING, claimed_at=now)
        .returning(
            OutboxMessage.id,
            OutboxMessage.channel,
            OutboxMessage.address,
            OutboxMessage.kind,
            OutboxMessage.priority,
            OutboxMessage.broadcast_id,
            OutboxMessage.method,
            OutboxMessage.payload,
            OutboxMessage.attempts,
        )
        .execution_options(synchronize_session=False)
    )
    rows = [Claimed(*row) for row in result.all()]
    rows.sort(key=lambda r: (r.priority, r.id))
    return rows


async def recover(
    session: AsyncSession, claimed_before: dt.datetime, channel: str | None = None
) -> int:
    """Return rows stuck in ``sending`` since before ``claimed_before`` to ``pending``.

    Only the outbox's one sender calls this, right after taking the sender lock: rows still
    ``sending`` then were claimed by a sender that died, and any of them may or may not have
    reached Telegram; sending them again is the at-most-one duplicate the design allows.
    """
    stuck = update(OutboxMessage).where(
        OutboxMessage.state == SENDING, OutboxMessage.claimed_at < claimed_before
    )
    if channel is not None:  # another channel's sender may be sending its rows right now
        stuck = stuck.where(OutboxMessage.channel == channel)
    result = await session.execute(
        stuck.values(state=PENDING, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def chat_states(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], ChatState]:
    """Blocked and notice settings of these chats (by (channel, address)), as the database has
    them now."""
    found: dict[tuple[str, str], ChatState] = {}
    for part in _chunks(sorted(set(keys))):
        rows = await session.execute(
            select(Chat.channel, Chat.address, Chat.blocked_at, Chat.notices, Chat.locale).where(
                tuple_(Chat.channel, Chat.address).in_(part)
            )
        )
        for channel, address, blocked_at, notices, locale in rows.all():
            found[channel, address] = ChatState(blocked_at is not None, bool(notices), locale)
    return found


async def record(session: AsyncSession, outcomes: Sequence[Outcome], now: dt.datetime) -> None:
    """Write outcomes in few statements: one per chunk of sent rows, one batch for the rest."""
    sent = [o.row.id for o in outcomes if o.state == SENT]
    for part in _chunks(sent):
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(part))
            .values(state=SENT, sent_at=now, last_error=None)
            .execution_options(synchronize_session=False)
        )
    others = [
        {
            "id": o.row.id,
            "state": o.state,
            "attempts": o.attempts,
            "not_before": o.not_before or now,
            "claimed_at": None if o.state == PENDING else now,
            "last_error": o.error[:200] if o.error else None,
        }
        for o in outcomes
        if o.state != SENT
    ]
    if others:
        await session.execute(update(OutboxMessage), others)


async def counts(session: AsyncSession, broadcast_id: int | None = None) -> dict[str, int]:
    """Rows per state (of one broadcast, or of the whole outbox)."""
    stmt = select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
    if broadcast_id is not None:
        stmt = stmt.where(OutboxMessage.broadcast_id == broadcast_id)
    return {state: int(n) for state, n in (await session.execute(stmt)).all()}


# --- held rows: gathered into one message per person (issue 12) ---------------------------------


@dataclass(frozen=True)
class Held:
    id: int
    channel: str
    address: str
    priority: int
    payload: dict[str, Any]
    not_before: dt.datetime

    @property
    def key(self) -> tuple[str, str]:
        return self.channel, self.address


async def due_chats(session: AsyncSession, now: dt.datetime, limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` chats with held rows due by ``now`` (the partial index on held rows'
    ``not_before``: an idle check costs one index probe)."""
    rows = await session.execute(
        select(OutboxMessage.channel, OutboxMessage.address)
        .where(OutboxMessage.state == HELD, OutboxMessage.not_before <= now)
        .order_by(OutboxMessage.not_before, OutboxMessage.id)
        .limit(limit)
    )
    return list(dict.fromkeys((str(c), str(a)) for c, a in rows.all()))


async def held_of(
    session: AsyncSession, keys: Sequence[tuple[str, str]], now: dt.datetime | None = None
) -> list[Held]:
    """These chats' held rows (due by ``now`` when given), in id order."""
    out: list[Held] = []
    for part in _chunks(sorted(set(keys))):
        stmt = select(
            OutboxMessage.id,
            OutboxMessage.channel,
            OutboxMessage.address,
            OutboxMessage.priority,
            OutboxMessage.payload,
            OutboxMessage.not_before,
        ).where(OutboxMessage.state == HELD, tuple_(OutboxMessage.channel,
                                                    OutboxMessage.address).in_(part))
        if now is not None:
            stmt = stmt.where(OutboxMessage.not_before <= now)
        out += [Held(*row) for row in (await session.execute(stmt)).all()]
    out.sort(key=lambda h: h.id)
    return out


async def settle_held(
    session: AsyncSession, ids: Sequence[int], state: str, now: dt.datetime, note: str | None
) -> int:
    """Move held rows to ``state`` (gathered or skipped); rows no longer held are left alone.
    Returns how many moved."""
    moved = 0
    for part in _chunks(sorted(ids)):
        result = await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(part), OutboxMessage.state == HELD)
            .values(state=state, sent_at=now, last_error=note)
            .execution_options(synchronize_session=False)
        )
        moved += int(getattr(result, "rowcount", 0) or 0)
    return moved


async def postpone_held(session: AsyncSession, ids: Sequence[int], until: dt.datetime) -> None:
    for part in _chunks(sorted(ids)):
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(part), OutboxMessage.state == HELD)
            .values(not_before=until)
            .execution_options(synchronize_session=False)
        )


# --- pruning (issue 12: bounded databases) ------------------------------------------------------

PRUNED_THROUGH = "outbox_pruned_through"
"""The feed position every pruned notice row's event was at or before: the event reader skips
events up to it, so an event replayed after its row was pruned is still told only once."""


async def prune(
    session: AsyncSession,
    before: dt.datetime,
    feed_cursor: str,
    limit: int = 5000,
    states: Sequence[str] = FINAL_STATES,
) -> int:
    """Delete up to ``limit`` rows in ``states`` (final ones) created before ``before``; returns
    how many.

    A broadcast's progress is counted on its broadcasts row, never from these. In the same
    transaction the feed position the reader has reached is recorded as ``PRUNED_THROUGH``: every
    row that exists now came from an event at or before it (the reader enqueues a page's rows and
    moves its cursor in one transaction), so no event whose row is gone can be told again.
    """
    ids = (
        await session.scalars(
            select(OutboxMessage.id)
            .where(OutboxMessage.created_at < before, OutboxMessage.state.in_(states))
            .order_by(OutboxMessage.created_at)
            .limit(limit)
        )
    ).all()
    if not ids:
        return 0
    position = await cursors.get(session, feed_cursor)
    if position is not None:
        await cursors.start(session, PRUNED_THROUGH, position)
        await session.execute(
            update(Cursor)
            .where(Cursor.name == PRUNED_THROUGH, Cursor.value < position)
            .values(value=position)
        )
    deleted = 0
    for part in _chunks(list(ids)):
        result = await session.execute(
            delete(OutboxMessage)
            .where(OutboxMessage.id.in_(part))
            .execution_options(synchronize_session=False)
        )
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted
