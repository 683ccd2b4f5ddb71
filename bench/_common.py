"""What the benches share: scratch databases, seeding in bulk, percentiles and the printed table."""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import insert, select

from ledger.db import Database
from ledger.schema import Member, Merchant
from tests.databases import PG_ENV, fresh_postgres

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str:
    """A PostgreSQL URL whose user may CREATE DATABASE; the scratch databases live beside it.

    The tests' variable, defaulting to the local server the README describes.
    """
    os.environ.setdefault(PG_ENV, PG_DEFAULT)
    return os.environ[PG_ENV].replace("postgresql+asyncpg://", "postgresql://")


@asynccontextmanager
async def scratch_postgres() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards even if the bench fails."""
    postgres_admin_url()
    async with fresh_postgres() as url:
        yield url


@asynccontextmanager
async def scratch_database(kind: str, prefix: str) -> AsyncIterator[str]:
    """A ledger URL on a fresh SQLite file (in a temporary folder) or PostgreSQL database."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as folder:
            yield f"sqlite:///{Path(folder) / 'ledger.db'}"
    else:
        async with scratch_postgres() as url:
            yield url


async def insert_members(db: Database, count: int, batch: int = 5000) -> list[int]:
    """``count`` members straight into the table (seeding, not what is measured)."""
    now = dt.datetime(2026, 1, 1)
    for start in range(0, count, batch):
        rows = [
            {
                "locale": "zh_Hans",
                "display_name": f"会员{start + n}",
                "points": 0,
                "vouchers_fen": 0,
                "created_at": now,
                "last_active_at": now,
            }
            for n in range(min(batch, count - start))
        ]
        async with db.write() as session:
            await session.execute(insert(Member), rows)
    return await member_ids(db)


async def member_ids(db: Database) -> list[int]:
    async with db.read() as session:
        return list((await session.scalars(select(Member.id).order_by(Member.id))).all())


async def merchant_ids(db: Database) -> list[int]:
    async with db.read() as session:
        return list((await session.scalars(select(Merchant.id).order_by(Merchant.id))).all())


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def table(rows: Sequence[tuple[str, str]], title: str) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * max(len(title), width + 20)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)
