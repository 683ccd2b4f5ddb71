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

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.chats import utcnow
from bot.storage.schema import Chat, OutboxMessage

NOTICE = 0  # priority: what concerns one person's own money goes first
BULK = 1  # broadcasts

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
BLOCKED = "blocked"
FAILED = "failed"
SKIPPED = "skipped"
FINAL_STATES = (SENT, BLOCKED, FAILED, SKIPPED)

T = TypeVar("T")

_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Outgoing:
    channel: str
    address: str
    method: str  # Bot API method: sendMessage, sendPhoto
    payload: dict[str, Any]  # its parameters, except the recipient
    kind: str  # notice | receipt | broadcast
    dedupe_key: str | None = None
    priority: int = NOTICE
    broadcast_id: int | None = None


async def enqueue(session: AsyncSession, messages: list[Outgoing]) -> int:
    """Add messages in the caller's transaction; returns how many were new (not duplicates)."""
    if not messages:
        return 0
    bind = session.bind
    postgres = bind is not None and bind.dialect.name == "postgresql"
    builder = postgresql.insert if postgres else sqlite.insert
    now = utcnow()
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
                "state": PENDING,
                "attempts": 0,
                "not_before": now,
                "created_at": now,
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
            select(Chat.channel, Chat.address, Chat.blocked_at, Chat.notices).where(
                tuple_(Chat.channel, Chat.address).in_(part)
            )
        )
        for channel, address, blocked_at, notices in rows.all():
            found[channel, address] = ChatState(blocked_at is not None, bool(notices))
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
