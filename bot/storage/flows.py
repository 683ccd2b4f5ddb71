"""Conversations waiting for the person's next message, kept in the database.

A cashier who typed a code and is asked for the bill amount can have the bot restarted, or the
next update land on another bot process, and still be asked the right question.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete

from bot.storage.chats import utcnow
from bot.storage.db import BotDatabase
from bot.storage.schema import Flow


@dataclass(frozen=True)
class Pending:
    kind: str
    data: dict[str, Any]


class FlowStore:
    def __init__(self, db: BotDatabase) -> None:
        self.db = db

    async def start(self, chat_id: int, kind: str, data: dict[str, Any], ttl: dt.timedelta) -> None:
        async with self.db.session() as session:
            row = await session.get(Flow, chat_id)
            if row is None:
                session.add(Flow(chat_id=chat_id, kind=kind, data=data, expires_at=utcnow() + ttl))
            else:
                row.kind, row.data, row.expires_at = kind, data, utcnow() + ttl

    async def get(self, chat_id: int) -> Pending | None:
        async with self.db.session() as session:
            row = await session.get(Flow, chat_id)
        if row is None or row.expires_at <= utcnow():
            return None
        return Pending(row.kind, dict(row.data))

    async def finish(self, chat_id: int, kind: str | None = None) -> bool:
        """End the chat's pending conversation (only if it is ``kind``); True if one ended."""
        async with self.db.session() as session:
            stmt = delete(Flow).where(Flow.chat_id == chat_id)
            if kind is not None:
                stmt = stmt.where(Flow.kind == kind)
            result = await session.execute(stmt)
        return bool(getattr(result, "rowcount", 0))
