"""Putting messages into the outbox. The sender (``bot.sender``) takes them out.

Rows are deduplicated by key (a ledger event id, or broadcast and chat), so reading the event
feed twice, or a crash between reading and saving the cursor, never says anything twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.chats import utcnow
from bot.storage.schema import OutboxMessage

NOTICE = 0  # priority: what concerns one person's own money goes first
BULK = 1  # broadcasts


@dataclass(frozen=True)
class Outgoing:
    chat_id: int
    method: str  # Bot API method: sendMessage, sendPhoto
    payload: dict[str, Any]  # its parameters, except chat_id
    kind: str  # notice | receipt | broadcast
    dedupe_key: str | None = None
    priority: int = NOTICE
    broadcast_id: int | None = None


async def enqueue(session: AsyncSession, messages: list[Outgoing]) -> int:
    """Add messages in the caller's transaction; returns how many were new (not duplicates)."""
    if not messages:
        return 0
    from sqlalchemy.dialects import postgresql, sqlite

    bind = session.bind
    builder = (
        postgresql.insert
        if bind is not None and bind.dialect.name == "postgresql"
        else (sqlite.insert)
    )
    now = utcnow()
    stmt = builder(OutboxMessage).on_conflict_do_nothing(index_elements=["dedupe_key"])
    result = await session.execute(
        stmt.returning(OutboxMessage.id),
        [
            {
                "chat_id": m.chat_id,
                "dedupe_key": m.dedupe_key,
                "kind": m.kind,
                "priority": m.priority,
                "broadcast_id": m.broadcast_id,
                "method": m.method,
                "payload": m.payload,
                "state": "pending",
                "attempts": 0,
                "not_before": now,
                "created_at": now,
            }
            for m in messages
        ],
    )
    return len(result.all())
