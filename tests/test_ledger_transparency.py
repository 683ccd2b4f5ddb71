"""The public record (issue 13), on SQLite and PostgreSQL: anyone can read the pool, points and
price with their daily history without a key; each day's figures are what the journal sums to
up to the heads published that day (summed here from the raw entries, not by the ledger's
code); and a history rewritten with recomputed hashes — which plain ``verify`` cannot see —
fails ``greenpoints ledger verify --against`` a kept copy of the record, file or URL."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import delete, select, update

from ledger import journal, transparency, verify
from ledger.api.openapi import document
from ledger.context import Ctx
from ledger.db import Database
from ledger.errors import PublishDateRefused
from ledger.principal import SYSTEM
from ledger.schema import JournalEntry, Shard, TransparencyDay
from ledger_client.http import HttpLedgerClient
from tests.conftest import Served, World
from tests.databases import postgres_admin_url
from tests.ledger_support import FixedClock, buy, cli, http, response_schema, schema_errors

DAYS = 3


async def history(world: World, clock: FixedClock) -> list[dt.date]:
    """Three local days of purchases, each closed by its release (which publishes the day)."""
    s = world.service
    released = []
    for day in range(DAYS):
        for n in range(6):
            shop = (world.merchant_id, world.other_merchant_id)[n % 2]
            member = world.member_ids[n % 3]
            await buy(s, shop, member, 12_000 + 977 * n + 31 * day, f"pub-{day}-{n:02d}")
            clock.advance(minutes=7)
        out = await s.release(SYSTEM)
        released.append(out.date)
        clock.advance(days=1)
    return released


async def raw_entries(db: Database) -> list[tuple[int, int, str, list[Any]]]:
    async with db.read() as session:
        rows = await session.execute(
            select(JournalEntry.shard, JournalEntry.seq, JournalEntry.hash, JournalEntry.postings)
        )
        return [(int(k), int(s), str(h), list(p)) for k, s, h, p in rows.all()]


def sums_up_to(entries: list[tuple[int, int, str, list[Any]]], heads: dict[int, int]) -> tuple[
    int, int
]:
    """Pool (fen in the "pool" account) and points in circulation (what the "issuance" account
    gave out) over every entry at or before the published head of its shard."""
    pool = points = 0
    for shard, seq, _hash, postings in entries:
        if seq <= heads.get(shard, 0):
            for account, _unit, amount in postings:
                if account == "pool":
                    pool += amount
                elif account == "issuance":
                    points -= amount
    return pool, points


async def test_the_public_record_is_open_and_reproducible_from_the_journal(
    served: Served, world: World, clock: FixedClock, http_session: aiohttp.ClientSession
) -> None:
    released = await history(world, clock)
    # No key at all; a non-public operation still wants one.
    answer = await http(http_session, "GET", f"{served.url}/v1/public/pool")
    assert answer.status == 200, answer.body
    assert (await http(http_session, "GET", f"{served.url}/v1/stats")).status == 401
    doc = document()
    schema = response_schema(doc, "GET", "/v1/public/pool", 200)
    assert schema_errors(answer.body, schema, doc) == []
    assert doc["paths"]["/v1/public/pool"]["get"]["security"] == []
    body = answer.body
    assert [d["date"] for d in body["days"]] == [d.isoformat() for d in released]
    entries = await raw_entries(served.service.ctx.db)
    by_position = {(k, s): h for k, s, h, _p in entries}
    for day in body["days"]:
        heads = {h["shard"]: h["seq"] for h in day["heads"]}
        assert sorted(heads) == list(range(served.service.ctx.rules.shards))
        for h in day["heads"]:
            assert h["seq"] == 0 or by_position[(h["shard"], h["seq"])] == h["hash"]
        assert (day["pool_fen"], day["points"]) == sums_up_to(entries, heads), day["date"]
    # Each day moved the figures (purchases and a release), and today's are the live ones.
    assert len({(d["pool_fen"], d["points"]) for d in body["days"]}) == DAYS
    stats = await served.service.stats(SYSTEM)
    assert (body["pool_fen"], body["points"]) == (stats.pool_fen, stats.points_outstanding)
    assert body["days"][-1]["pool_fen"] == stats.pool_fen  # nothing happened since the release
    # Each record is chained to the one before.
    prev = "0" * 64
    for day in body["days"]:
        assert day["prev_hash"] == prev
        prev = day["hash"]
    # A second release or publish for a day changes nothing; ?days= takes the newest.
    last = released[-1]
    await world.service.release(SYSTEM, last)
    again = await world.service.publish(SYSTEM, last)
    assert again.model_dump(mode="json") == body["days"][-1]
    newest = await http(http_session, "GET", f"{served.url}/v1/public/pool", params={"days": "1"})
    assert newest.body["days"] == body["days"][-1:]
    bad = await http(http_session, "GET", f"{served.url}/v1/public/pool", params={"days": "0"})
    assert bad.status == 400
    # The client reads it with no key, too, and admins can publish through it.
    async with HttpLedgerClient(served.url, "", attempts=1) as anyone:
        read = await anyone.public_pool()
    assert [d.hash for d in read.days] == [d["hash"] for d in body["days"]]
    async with served.client("admin") as admin:
        today = await admin.publish()
    assert today.date > last
    assert (await world.service.public_pool(SYSTEM)).days[-1].hash == today.hash


@asynccontextmanager
async def clones(database_url: str, n: int) -> AsyncIterator[list[str]]:
    """``n`` independent copies of the database (SQLite files, or PostgreSQL templates)."""
    if database_url.startswith("sqlite"):
        source = Path(database_url.removeprefix("sqlite:///"))
        urls = []
        for i in range(n):
            target = source.with_name(f"clone-{i}-{uuid.uuid4().hex[:4]}.db")
            shutil.copyfile(source, target)
            urls.append(f"sqlite:///{target}")
        yield urls
        return
    admin = postgres_admin_url()
    assert admin is not None
    original = database_url.rpartition("/")[2]
    names = [f"{original}_t{i}_{uuid.uuid4().hex[:4]}" for i in range(n)]
    conn = await asyncpg.connect(admin)
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{original}"')
        yield [f"{database_url.rpartition('/')[0]}/{name}" for name in names]
    finally:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def rewrite(url: str, shard: int, *, records_too: bool) -> None:
    """Backdate the first entry of ``shard`` by a day and recompute every hash after it, the
    shard's head and (``records_too``) the stored public records: every check the database can
    make of itself then passes."""
    db = Database(url)
    try:
        async with db.write() as session:
            chain = (
                await session.scalars(
                    select(JournalEntry)
                    .where(JournalEntry.shard == shard)
                    .order_by(JournalEntry.seq)
                )
            ).all()
            prev = journal.GENESIS
            for n, e in enumerate(chain):
                when = e.created_at - dt.timedelta(days=1) if n == 0 else e.created_at
                content = journal.content_hash(e.shard, e.seq, e.kind, e.ref, when, e.postings)
                digest = journal.chain_hash(prev, content)
                await session.execute(
                    update(JournalEntry)
                    .where(JournalEntry.id == e.id)
                    .values(created_at=when, content_hash=content, prev_hash=prev, hash=digest)
                )
                prev = digest
            await session.execute(update(Shard).where(Shard.k == shard).values(head_hash=prev))
            if records_too:
                hashes = {
                    s: h
                    for s, h in (
                        await session.execute(
                            select(JournalEntry.seq, JournalEntry.hash).where(
                                JournalEntry.shard == shard
                            )
                        )
                    ).all()
                }
                last = journal.GENESIS
                for r in (
                    await session.scalars(select(TransparencyDay).order_by(TransparencyDay.id))
                ).all():
                    heads = [
                        [k, s, hashes[s] if k == shard and s else h] for k, s, h in r.heads
                    ]
                    digest = transparency.record_hash(
                        last, r.day, r.published_at, r.pool_fen, r.points, heads
                    )
                    await session.execute(
                        update(TransparencyDay)
                        .where(TransparencyDay.id == r.id)
                        .values(heads=heads, prev_hash=last, hash=digest)
                    )
                    last = digest
    finally:
        await db.dispose()


async def test_a_rewritten_history_fails_against_the_published_heads(
    served: Served,
    world: World,
    clock: FixedClock,
    database_url: str,
    http_session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    await history(world, clock)
    public = (await http(http_session, "GET", f"{served.url}/v1/public/pool")).body
    kept = tmp_path / "published.json"
    kept.write_text(json.dumps(public), encoding="utf-8")
    first_day = public["days"][0]
    # A shard the first day's record pins past its first entry, and the entry pinned there.
    shard, seq = next((h["shard"], h["seq"]) for h in first_day["heads"] if h["seq"] >= 1)
    async with world.service.ctx.db.read() as session:
        pinned = await session.scalar(
            select(JournalEntry.id).where(JournalEntry.shard == shard, JournalEntry.seq == seq)
        )
    # The clean ledger matches its copy, read from a file and from the public URL.
    clean_file = await cli(database_url, "verify", "--against", str(kept))
    assert clean_file.code == 0, clean_file.err
    heads = sum(len(d["heads"]) for d in public["days"])
    assert f"{heads} published heads matched" in clean_file.out
    clean_url = await cli(
        database_url, "verify", "--partitions", "2", "--against", f"{served.url}/v1/public/pool"
    )
    assert clean_url.code == 0, clean_url.err
    await world.service.ctx.db.dispose()
    async with clones(database_url, 3) as (thorough, careless, shardless):
        await rewrite(thorough, shard, records_too=True)
        await rewrite(careless, shard, records_too=False)
        # Today's verify cannot see the thorough rewrite: every hash in the database agrees.
        blind = await cli(thorough, "verify")
        assert blind.code == 0, blind.err
        for partitions in ("1", "3"):
            run = await cli(
                thorough, "verify", "--partitions", partitions, "--against", str(kept)
            )
            assert run.code == 1, (partitions, run.out, run.err)
            first = run.err.splitlines()[0]
            where = f"FAIL: journal entry {pinned} (shard {shard}, seq {seq}"
            assert first.startswith(where), first
            assert f"the heads published for {first_day['date']}" in first, first
            assert "history was rewritten" in first, first
        # Leaving the stored records alone is caught without any copy.
        lazy = await cli(careless, "verify")
        assert lazy.code == 1, lazy.out
        first = lazy.err.splitlines()[0]
        assert f"journal entry {pinned} (shard {shard}, seq {seq}" in first, first
        assert f"the record of {first_day['date']}" in first, first
        # A chain cannot be hidden by dropping its shard's row either.
        db = Database(shardless)
        try:
            async with db.write() as session:
                await session.execute(delete(Shard).where(Shard.k == shard))
            report = await verify.verify(Ctx(db))
        finally:
            await db.dispose()
        assert not report.ok and f"shard {shard}: the record of" in report.problems[0]
        assert "but the shard is gone" in report.problems[0], report.problems


async def test_an_unreadable_copy_is_an_error_not_a_pass(
    service: object, database_url: str, tmp_path: Path
) -> None:
    missing = await cli(database_url, "verify", "--against", str(tmp_path / "nothing.json"))
    assert missing.code == 2 and "cannot read" in missing.err, missing.err
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"days": []}), encoding="utf-8")
    run = await cli(database_url, "verify", "--against", str(empty))
    assert run.code == 2 and "no journal heads" in run.err, run.err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"heads": [{"shard": 0, "seq": 1, "hash": "xyz"}]}))
    run = await cli(database_url, "verify", "--against", str(bad))
    assert run.code == 2 and "64-hex" in run.err, run.err


async def test_a_public_record_follows_the_calendar(world: World, tmp_path: Path) -> None:
    """Found when tried as a new user would: ``greenpoints ledger publish --date 2099-01-01``
    (and 1970-01-01) entered the public chain out of order, where release refuses such dates."""
    s = world.service
    today = s.ctx.today()
    first = await s.publish(SYSTEM, today)
    for day in (today + dt.timedelta(days=1), dt.date(2099, 1, 1), today - dt.timedelta(days=1)):
        with pytest.raises(PublishDateRefused):
            await s.publish(SYSTEM, day)
    assert await s.publish(SYSTEM, today) == first  # the day itself again: the first record
    assert [d.date for d in (await s.public_pool(SYSTEM, 90)).days] == [today]


async def test_commands_on_a_missing_ledger_file_refuse_instead_of_creating_it(
    tmp_path: Path,
) -> None:
    """A nightly ``verify`` with a mistyped path created an empty database and said ok."""
    missing = tmp_path / "nowhere" / "ledger.db"
    for command in (["verify"], ["publish"], ["release"]):
        run = await cli(f"sqlite:///{missing}", *command)
        assert run.code == 2 and "no ledger database at" in run.err, (command, run)
    assert not missing.parent.exists()
