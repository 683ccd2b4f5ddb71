"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData

from bot.storage.db import BotDatabase
from bot.storage.schema import Base as BotBase
from ledger.db import Database
from ledger.migrate import upgrade
from ledger.schema import Base as LedgerBase
from tests.conftest import DATABASES
from tests.databases import fresh_database


def _differences(connection: Connection, metadata: MetaData) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


@pytest.mark.parametrize("kind", DATABASES)
async def test_ledger_migrations_match_models(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = Database(url)
        try:
            await upgrade(db)
            await upgrade(db)  # a second start finds nothing to do
            async with db.write_engine.connect() as conn:
                diff = await conn.run_sync(_differences, LedgerBase.metadata)
        finally:
            await db.dispose()
    assert diff == []


@pytest.mark.parametrize("kind", DATABASES)
async def test_bot_migrations_match_models(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = BotDatabase(url)
        try:
            await db.upgrade()
            await db.upgrade()
            async with db.engine.connect() as conn:
                diff = await conn.run_sync(_differences, BotBase.metadata)
        finally:
            await db.dispose()
    assert diff == []
