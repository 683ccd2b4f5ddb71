"""Conversations waiting for the person's next message, kept in the database.

A cashier who typed a code and is asked for the bill amount can have the bot restarted, or the
next update land on another bot process, and still be asked the right question.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from bot.chat.flows import Pending
from bot.storage.chats import ChatKey, utcnow
from bot.storage.db import BotDatabase
from bot.storage.schema import Flow


class FlowStore:
    def __init__(self, db: BotDatabase) -> None:
        self.db = db

    async def start(self, key: ChatKey, kind: str, data: dict[str, Any], ttl: dt.timedelta) -> None:
        """Open ``kind`` for the chat, replacing whatever conversation it had.

        One upsert rather than read-then-insert: two messages of one chat handled at once (a
        code scanned twice, a double-sent link) both start a flow, and two INSERTs made one of
        them fail on PostgreSQL with a duplicate key. The later one wins, as it would in turn.
        """
        insert = sqlite.insert if self.db.is_sqlite else postgresql.insert
        stmt = insert(Flow).values(
            channel=key[0], address=key[1], kind=kind, data=data, expires_at=utcnow() + ttl
        )
        replace = {name: stmt.excluded[name] for name in ("kind", "data", "expires_at")}
        async with self.db.session() as session:
            await session.execute(
                stmt.on_conflict_do_update(index_elements=["channel", "address"], set_=replace)
            )

    async def get(self, key: ChatKey) -> Pending | None:
        async with self.db.session() as session:
            row = await session.get(Flow, key)
        if row is None or row.expires_at <= utcnow():
            return None
        return Pending(row.kind, dict(row.data))

    async def finish(self, key: ChatKey, kind: str | None = None) -> bool:
        """End the chat's pending conversation (only if it is ``kind``); True if one ended."""
        async with self.db.session() as session:
            stmt = delete(Flow).where(Flow.channel == key[0], Flow.address == key[1])
            if kind is not None:
                stmt = stmt.where(Flow.kind == kind)
            result = await session.execute(stmt)
        return bool(getattr(result, "rowcount", 0))
