"""Bring a ledger database to the newest schema; run by the service on every start.

Several ledger processes may start at once against one PostgreSQL: an advisory lock makes the
others wait for the first one's migration instead of racing it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from ledger.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x6C6564676572  # "ledger"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
    command.upgrade(alembic_config(connection), "head")


async def upgrade(db: Database) -> None:
    async with db.write_engine.begin() as conn:
        await conn.run_sync(_upgrade)
