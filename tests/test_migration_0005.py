"""Migration 0005_hardening on a ledger built by the schema before it: keys revoked earlier
become revocation rows, so every process counts them as already revoked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, select, text

from ledger.db import Database
from ledger.migrate import alembic_config, upgrade
from ledger.schema import ApiKey, KeyRevocation
from tests.conftest import DATABASES
from tests.databases import fresh_database

REVOKED = dt.datetime(2026, 11, 1, 8, 0)


def _to_0001_with_keys(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "0001")
    for n, revoked in enumerate([None, REVOKED, None]):
        connection.execute(
            text("INSERT INTO api_keys (key_hash, prefix, role, label, created_at, revoked_at) "
                 "VALUES (:h, 'gp_bot_', 'bot', '', :c, :r)"),
            {"h": f"{n:064d}", "c": dt.datetime(2026, 10, 1), "r": revoked},
        )


@pytest.mark.parametrize("kind", DATABASES)
async def test_keys_revoked_before_count_as_revoked(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = Database(url)
        try:
            async with db.write_engine.begin() as conn:
                await conn.run_sync(_to_0001_with_keys)
            await upgrade(db)
            async with db.write_engine.connect() as conn:
                rows = (await conn.execute(
                    select(KeyRevocation.revoked_at, ApiKey.key_hash).join(
                        ApiKey, ApiKey.id == KeyRevocation.key_id)
                )).all()
        finally:
            await db.dispose()
    assert [tuple(row) for row in rows] == [(REVOKED, f"{1:064d}")]
