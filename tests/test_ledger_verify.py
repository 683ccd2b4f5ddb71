"""``greenpoints ledger verify`` (the real console script) and ``verify()``, on SQLite and
PostgreSQL: a clean ledger passes; altered postings, a deleted entry, a re-hashed entry and an
altered balance each fail, naming the first thing that does not match."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select, text, update

from ledger import journal, verify
from ledger.context import Ctx
from ledger.db import Database
from ledger.principal import SYSTEM
from ledger.schema import JournalEntry
from tests.conftest import World
from tests.databases import postgres_admin_url
from tests.ledger_support import buy, cli, pay_with_code


async def populate(world: World) -> None:
    s = world.service
    for n in range(20):
        shop = (world.merchant_id, world.other_merchant_id)[n % 2]
        await buy(s, shop, world.member_ids[n % 3], 50_000 + 137 * n, f"verify-{n:04d}")
    await s.release(SYSTEM)
    await pay_with_code(s, world.merchant_id, world.member_ids[0], 20_000, "verify-redeem")


@pytest.fixture
async def copies(world: World, database_url: str) -> AsyncIterator[list[str]]:
    """Five independent copies of a populated ledger, to spoil one way each."""
    await populate(world)
    await world.service.ctx.db.dispose()  # no connection may hold the original open
    urls: list[str] = []
    if database_url.startswith("sqlite"):
        source = Path(database_url.removeprefix("sqlite:///"))
        for n in range(5):
            target = source.with_name(f"copy-{n}.db")
            # SQLite's own backup, not a file copy: a page still in the WAL file (a checkpoint
            # not yet run when the last connection closed) would be missing from a copy of the
            # main file alone (it happened under mutmut: "no such table").
            with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
                src.backup(dst)
            urls.append(f"sqlite:///{target}")
        yield urls
        return
    admin = postgres_admin_url()
    assert admin is not None
    original = database_url.rpartition("/")[2]
    conn = await asyncpg.connect(admin)
    names = [f"{original}_c{n}_{uuid.uuid4().hex[:4]}" for n in range(5)]
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{original}"')
        base = database_url.rpartition("/")[0]
        yield [f"{base}/{name}" for name in names]
    finally:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@dataclass(frozen=True)
class Spoiled:
    url: str
    names: str  # what the failure must name
    by_cli: bool = False  # also checked through the console script


async def entries(db: Database) -> list[JournalEntry]:
    async with db.read() as session:
        query = select(JournalEntry).order_by(JournalEntry.shard, JournalEntry.seq)
        return list((await session.scalars(query)).all())


def followed(all_entries: list[JournalEntry]) -> tuple[JournalEntry, JournalEntry]:
    """The first purchase entry that has a later entry in its shard, and that later entry."""
    for e, nxt in itertools.pairwise(all_entries):
        if e.shard == nxt.shard and e.kind == "purchase":
            return e, nxt
    raise AssertionError("no shard holds two entries")


async def spoil(urls: list[str], member_id: int) -> list[Spoiled]:
    out: list[Spoiled] = []
    # 1. move one point between two accounts in an entry's postings: balanced, but altered
    db = Database(urls[0])
    e, _ = followed(await entries(db))
    moved = [list(p) for p in e.postings]
    points = [p for p in moved if p[1] == journal.POINTS and p[2] > 0]
    points[0][2] -= 1
    points[1][2] += 1
    async with db.write() as session:
        await session.execute(
            update(JournalEntry).where(JournalEntry.id == e.id).values(postings=moved)
        )
    await db.dispose()
    out.append(Spoiled(urls[0], f"journal entry {e.id} (shard {e.shard}, seq {e.seq}", True))
    # 2. delete an entry in the middle of a chain: the next one is the first that does not fit
    db = Database(urls[1])
    e, nxt = followed(await entries(db))
    async with db.write() as session:
        await session.execute(text("DELETE FROM journal_entries WHERE id = :id"), {"id": e.id})
    await db.dispose()
    out.append(Spoiled(urls[1], f"journal entry {nxt.id} (shard {nxt.shard}, seq {nxt.seq}", True))
    # 3. delete the newest entry of a shard: the shard's head no longer matches its chain
    db = Database(urls[2])
    last = max(await entries(db), key=lambda x: x.id)
    async with db.write() as session:
        await session.execute(text("DELETE FROM journal_entries WHERE id = :id"), {"id": last.id})
    await db.dispose()
    out.append(Spoiled(urls[2], f"shard {last.shard}: head says seq {last.seq}"))
    # 4. alter an entry and re-hash it: its successor's link is what breaks
    db = Database(urls[3])
    e, nxt = followed(await entries(db))
    content = journal.content_hash(e.shard, e.seq, e.kind, e.ref, e.created_at, moved)
    async with db.write() as session:
        await session.execute(
            update(JournalEntry)
            .where(JournalEntry.id == e.id)
            .values(
                postings=moved,
                content_hash=content,
                hash=journal.chain_hash(e.prev_hash, content),
            )
        )
    await db.dispose()
    out.append(Spoiled(urls[3], f"journal entry {nxt.id} (shard {nxt.shard}, seq {nxt.seq}"))
    # 5. change a member's points column behind the journal's back
    db = Database(urls[4])
    async with db.write() as session:
        await session.execute(
            text("UPDATE members SET points = points + 7 WHERE id = :id"), {"id": member_id}
        )
    await db.dispose()
    out.append(Spoiled(urls[4], f"account member:{member_id}:points: balance is", True))
    return out


async def test_verify_names_the_first_bad_entry(
    world: World, database_url: str, copies: list[str]
) -> None:
    spoiled = await spoil(copies, world.member_ids[0])
    # The console script on SQLite for each way the issue names; on PostgreSQL once (the
    # exit code path is the same), verify() in-process for every way on both.
    sqlite = database_url.startswith("sqlite")
    by_cli = [s for s in spoiled if s.by_cli and (sqlite or s is spoiled[0])]
    clean, *runs = await asyncio.gather(
        cli(database_url, "verify"), *(cli(s.url, "verify") for s in by_cli)
    )
    assert clean.code == 0, clean.err
    assert clean.out.startswith("ok: ") and "journal entries" in clean.out
    db = Database(database_url)
    try:
        assert int(clean.out.split()[1]) == len(await entries(db)) >= 20
        assert (await verify.verify(Ctx(db))).ok
    finally:
        await db.dispose()
    for s, run in zip(by_cli, runs, strict=True):
        assert run.code == 1, (s.names, run.out, run.err)
        first = run.err.splitlines()[0]
        assert first.startswith("FAIL: ") and s.names in first, (s.names, run.err)
    for s in spoiled:
        db = Database(s.url)
        try:
            report = await verify.verify(Ctx(db))
        finally:
            await db.dispose()
        assert not report.ok and s.names in report.problems[0], report.problems


async def test_verify_refuses_a_partition_count_below_one(tmp_path: Path) -> None:
    """``verify --partitions 0`` (or -3) was accepted and quietly run as 1."""
    for given in ("0", "-3", "x"):
        run = await cli(f"sqlite:///{tmp_path / 'ledger.db'}", "verify", "--partitions", given)
        assert run.code == 2 and "--partitions" in run.err, (given, run)
