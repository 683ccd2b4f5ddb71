"""Real databases for tests: a fresh SQLite file, or a fresh PostgreSQL database per test.

PostgreSQL tests need ``GREENPOINTS_TEST_POSTGRES_URL`` (CI sets it); without it they skip and
say why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

PG_ENV = "GREENPOINTS_TEST_POSTGRES_URL"
PG_SKIP = f"set {PG_ENV}=postgresql://user@host:port/db to run the PostgreSQL tests"


def postgres_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip(PG_SKIP)
    name = f"gp_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_dsn(admin))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _db = _dsn(admin).rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        conn = await asyncpg.connect(_dsn(admin))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def fresh_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'ledger-{uuid.uuid4().hex[:8]}.db'}"
    else:
        async with fresh_postgres() as url:
            yield url
