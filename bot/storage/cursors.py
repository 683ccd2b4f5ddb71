"""Named positions in feeds the bot reads (the ledger's event feed).

A position only ever moves by compare-and-set in the same transaction as whatever reading the
feed produced, so two readers (two bot processes, or a poll racing ``settle``) can never move
it backwards or lose what one of them read.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.schema import Cursor


async def get(session: AsyncSession, name: str) -> int | None:
    return await session.scalar(select(Cursor.value).where(Cursor.name == name))


async def start(session: AsyncSession, name: str, value: int) -> int:
    """Store ``value`` unless the position already exists; returns the stored position."""
    bind = session.bind
    postgres = bind is not None and bind.dialect.name == "postgresql"
    insert = postgresql.insert if postgres else sqlite.insert
    await session.execute(
        insert(Cursor).values(name=name, value=value).on_conflict_do_nothing(
            index_elements=["name"]
        )
    )
    stored = await get(session, name)
    assert stored is not None
    return stored


async def advance(session: AsyncSession, name: str, old: int, new: int) -> bool:
    """Move from ``old`` to ``new``; False if someone else moved it first."""
    if new == old:
        return True
    result = await session.execute(
        update(Cursor)
        .where(Cursor.name == name, Cursor.value == old)
        .values(value=new)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
