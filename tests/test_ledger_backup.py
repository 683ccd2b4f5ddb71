"""``greenpoints ledger backup`` on a SQLite ledger that is busy, and the restore procedure.

The backup is taken by the real console script while 32 tills keep buying through a served
ledger (another process). The copy must be one point in time: every purchase answered before
the backup began is in it, the purchases in it are exactly the first ones committed (ids are
given in commit order on SQLite), every balance in it is what those purchases' answers add up
to, and ``greenpoints ledger verify`` passes on it. Restored the documented way (ledger stopped,
the old file and its -wal/-shm moved aside, the copy put in its place), it serves again. A copy
of a tampered ledger is as tampered as the original: verify on it names the entry.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, update

from ledger import journal
from ledger.backup import backup
from ledger.db import Database
from ledger.models import PurchaseRequest
from ledger.principal import SYSTEM
from ledger.schema import JournalEntry
from ledger.service import LedgerService
from ledger_client.errors import LedgerClientError
from ledger_client.http import HttpLedgerClient
from ledger_client.models import PurchaseResult
from tests.ledger_process import LedgerProcess, read_books, run_cli, seed_alliance

TILLS = 32
BEFORE_BACKUP = 100  # purchases answered before the backup starts
AFTER_BACKUP = 4 * TILLS  # and after it ends: more than can be in flight, so some came later
# Members who signed up and never bought: a file of ~22,000 pages, which a copy made 1,024
# pages a step at a time (as ledger/backup.py once did) never finished under these writers.
IDLE_MEMBERS = 400_000
PAGES_PER_STEP = 1024


def sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def page_count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.slow
async def test_backup_under_load_restores_to_one_point_in_time(tmp_path: Path) -> None:
    """The console script's backup of a ledger 32 tills are buying through, restored by the
    procedure operators follow, is one consistent point in time and serves again."""
    started = time.monotonic()
    live = tmp_path / "ledger" / "ledger.db"
    url = f"sqlite:///{live}"
    alliance = await seed_alliance(url, members=TILLS, vouchers=False, idle_members=IDLE_MEMBERS)
    assert page_count(live) > 10 * PAGES_PER_STEP
    ledger = LedgerProcess(url)
    await ledger.start()
    try:
        answers: list[PurchaseResult] = []
        failures: list[str] = []
        stop = False
        enough = asyncio.Event()
        wanted = BEFORE_BACKUP

        async def till(t: int) -> None:
            shop = alliance.merchant_ids[t % 2]
            member = alliance.member_ids[t]
            async with HttpLedgerClient(ledger.url, alliance.merchant_keys[shop], attempts=1) as c:
                for n in itertools.count():
                    if stop:
                        return
                    try:
                        key = f"bk-{t:02d}-{n:05d}"
                        answer = await c.record_purchase(shop, member, 5_000 + 37 * n, key)
                    except LedgerClientError as exc:
                        failures.append(repr(exc))
                        return
                    answers.append(answer)
                    if len(answers) >= wanted:
                        enough.set()

        tills = asyncio.gather(*(till(t) for t in range(TILLS)))
        try:
            await asyncio.wait_for(enough.wait(), 60)
            before = {a.purchase_id for a in answers}
            copy_file = tmp_path / "backups" / "ledger-backup.db"
            took = time.monotonic()
            done = await run_cli(url, "backup", str(copy_file), within=60)
            took = time.monotonic() - took
            during = len(answers) - len(before)
            enough.clear()
            wanted = len(answers) + AFTER_BACKUP
            await asyncio.wait_for(enough.wait(), 60)
        finally:
            stop = True
            await tills
        assert not failures, failures[:3]
        assert done.code == 0, done.err
        assert during > 0, "no purchase was answered while the backup ran"
        live_books = await read_books(url, "bk-")

        # Restore: stop the ledger, move the old files aside (a stale -wal would be replayed into
        # the copy), put the copy in place, verify, start.
        assert await ledger.stop() in (0, -15)
        aside = tmp_path / "replaced"
        aside.mkdir()
        for f in sqlite_files(live):
            if f.exists():
                f.rename(aside / f.name)
        shutil.copyfile(copy_file, live)
        verified = await run_cli(url, "verify")
        assert verified.code == 0, verified.err
        assert verified.out.startswith("ok: ")
        restored = await read_books(url, "bk-")

        # One point in time: everything answered before, exactly the first N committed, not all.
        copied = restored.purchase_ids()
        assert before <= copied
        assert copied == {i for i in live_books.purchase_ids() if i <= max(copied)}
        assert len(copied) < len(live_books.purchases)
        in_copy = [a for a in answers if a.purchase_id in copied]
        assert len(in_copy) == len(copied)
        assert {k: v["purchase_id"] for k, v in restored.keyed.items()} == {
            k: v["purchase_id"] for k, v in live_books.keyed.items() if v["purchase_id"] in copied
        }
        points: Counter[int] = Counter()
        shop_points: Counter[int] = Counter()
        for a in in_copy:
            points[a.member_id] += a.member_points
            shop_points[a.merchant_id] += a.merchant_points
        for member in alliance.member_ids:
            assert restored.member_points.get(member, 0) == points[member], member
        for shop in alliance.merchant_ids:
            assert restored.merchant_points.get(shop, 0) == shop_points[shop], shop

        # The restored ledger serves: a retry of a copied key gets its first answer, a new purchase
        # lands on top of the restored balance.
        await ledger.start()
        shop, member = alliance.merchant_ids[0], alliance.member_ids[0]
        async with (
            HttpLedgerClient(ledger.url, alliance.merchant_keys[shop], attempts=1) as till_,
            HttpLedgerClient(ledger.url, alliance.bot_key, attempts=1) as bot,
        ):
            first = next(a for a in in_copy if a.merchant_id == shop and a.member_id == member)
            first_id = first.purchase_id
            key = next(k for k, v in restored.keyed.items() if v["purchase_id"] == first_id)
            again = await till_.record_purchase(shop, member, first.amount_fen, key)
            assert again.purchase_id == first_id
            fresh = await till_.record_purchase(shop, member, 12_345, "after-restore-1")
            balance = await bot.balance(member)
            assert balance.points == points[member] + fresh.member_points
    finally:
        await ledger.stop()  # whichever run is current; a no-op once stopped
    print(
        f"\n[backup] {page_count(copy_file)} pages copied in {took:.2f} s (CLI start to exit) "
        f"while {during} purchases were answered; copy holds {len(copied)} of "
        f"{len(live_books.purchases)} purchases ({len(before)} answered before it began); "
        f"whole test {time.monotonic() - started:.1f} s"
    )


async def test_backup_of_a_tampered_ledger_fails_verify_naming_the_entry(tmp_path: Path) -> None:
    """The backup copies pages, it does not launder them: one entry's postings altered on the
    live ledger (balanced, so only its hash gives it away) fail verify on the copy too."""
    live = tmp_path / "ledger.db"
    url = f"sqlite:///{live}"
    await seed_alliance(url, members=6)
    db = Database(url)
    try:
        async with db.read() as session:
            entries = (
                await session.scalars(
                    select(JournalEntry).order_by(JournalEntry.shard, JournalEntry.seq)
                )
            ).all()
        entry = next(
            e for e, nxt in itertools.pairwise(entries)
            if e.shard == nxt.shard and e.kind == "purchase"
        )
        moved = [list(p) for p in entry.postings]
        gaining = [p for p in moved if p[1] == journal.POINTS and p[2] > 0]
        gaining[0][2] -= 1
        gaining[1][2] += 1
        async with db.write() as session:
            await session.execute(
                update(JournalEntry).where(JournalEntry.id == entry.id).values(postings=moved)
            )
    finally:
        await db.dispose()
    copy_file = tmp_path / "copy.db"
    made = await run_cli(url, "backup", str(copy_file))
    assert made.code == 0, made.err
    names = f"journal entry {entry.id} (shard {entry.shard}, seq {entry.seq}"
    for target in (url, f"sqlite:///{copy_file}"):
        run = await run_cli(target, "verify")
        assert run.code == 1, (target, run.out, run.err)
        first = run.err.splitlines()[0]
        assert first.startswith("FAIL: ") and names in first, (names, run.err)


@pytest.mark.slow
async def test_backup_finishes_however_busy_the_writers_are(tmp_path: Path) -> None:
    """Writers that never pause (32 purchases at a time, in-process) must not keep the backup
    from finishing: a copy made in steps starts over whenever another connection writes
    between two steps, so on a busy ledger it would never end."""
    live = tmp_path / "ledger.db"
    url = f"sqlite:///{live}"
    alliance = await seed_alliance(url, members=TILLS, vouchers=False, idle_members=IDLE_MEMBERS)
    assert page_count(live) > 10 * PAGES_PER_STEP
    service = await LedgerService.open(url)
    done = False
    bought = 0

    async def buy(t: int) -> None:
        nonlocal bought
        for n in itertools.count():
            if done:
                return
            await service.record_purchase(SYSTEM, PurchaseRequest(
                merchant_id=alliance.merchant_ids[t % 2], member_id=alliance.member_ids[t],
                amount_fen=5_000 + n, idempotency_key=f"busy-{t:02d}-{n:06d}"))
            bought += 1

    writers = asyncio.gather(*(buy(t) for t in range(TILLS)))
    try:
        target = tmp_path / "copy.db"
        at_start = bought
        await asyncio.wait_for(backup(service.ctx.db, target), 30)
        during = bought - at_start
    finally:
        done = True
        await writers
        await service.close()
    print(f"\n[busy backup] {during} purchases committed while it copied")
    assert during > 0
    verified = await run_cli(f"sqlite:///{target}", "verify")
    assert verified.code == 0, verified.err
