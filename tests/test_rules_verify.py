"""Every check ``verify`` makes, each broken alone (issue 15), on SQLite and PostgreSQL, with one
pass and with ``--partitions`` above 1 (as the README recommends nightly).

Each spoil changes exactly one thing and, where the verifier has an earlier check that would
catch the change first, repairs it the way a careful forger would: the chain is re-hashed by
the rule of DESIGN.md ("each entry carries the SHA-256 of its content and of the previous
entry"), written out here independently of ``ledger.journal``, and balance rows are moved along.
So only the check under test can name the fault, and switching that check off fails this file.

The clean ledger is also checked against figures computed here from other tables: the chain
recomputed by the same independent rule (an entry hash that ignores its predecessor is caught
at write time), points in circulation = what members and merchants hold, concessions = what the
purchases conceded, pool = concessions less what releases paid out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from ledger import verify
from ledger.db import Database
from ledger.principal import SYSTEM
from ledger.schema import (
    JournalEntry,
    Member,
    MerchantBalance,
    Purchase,
    Release,
    Shard,
    TransparencyDay,
    VoucherLot,
)
from ledger.service import LedgerService
from tests.conftest import World
from tests.ledger_support import cli
from tests.test_ledger_verify import populate

GENESIS = "0" * 64  # DESIGN.md: the first entry of a chain follows 64 zeros
PARTITIONS = (1, 3)


def spec_content_hash(e: JournalEntry, **changed: Any) -> str:
    """SHA-256 of the entry's canonical JSON (sorted keys, no spaces, UTF-8, µs timestamps)."""
    body = {
        "shard": e.shard,
        "seq": e.seq,
        "kind": e.kind,
        "ref": e.ref,
        "created_at": e.created_at.isoformat(timespec="microseconds"),
        "postings": [list(p) for p in e.postings],
    } | changed
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def spec_chain_hash(prev: str, content: str) -> str:
    return hashlib.sha256((prev + content).encode()).hexdigest()


async def chains(db: Database) -> dict[int, list[JournalEntry]]:
    async with db.read() as session:
        query = select(JournalEntry).order_by(JournalEntry.shard, JournalEntry.seq)
        rows = (await session.scalars(query)).all()
    out: dict[int, list[JournalEntry]] = defaultdict(list)
    for e in rows:
        out[e.shard].append(e)
    return out


async def longest(db: Database) -> list[JournalEntry]:
    """The longest chain (a shard with at least two entries, the first a purchase)."""
    best = max((c for c in (await chains(db)).values()), key=len)
    assert len(best) >= 2 and any(e.kind == "purchase" for e in best[:-1]), best
    return best


async def rechain(
    db: Database, shard: int, start_prev: str | None = None, from_seq: int = 1
) -> None:
    """Re-hash ``shard``'s chain from ``from_seq`` by the spec and move its head: a forger's
    repair, so no hash check can tell. ``start_prev`` overrides the hash the walk starts from."""
    chain = (await chains(db))[shard]
    prev = GENESIS if from_seq == 1 else next(e.hash for e in chain if e.seq == from_seq - 1)
    if start_prev is not None:
        prev = start_prev
    async with db.write() as session:
        for e in chain:
            if e.seq < from_seq:
                continue
            content = spec_content_hash(e)
            digest = spec_chain_hash(prev, content)
            await session.execute(
                update(JournalEntry)
                .where(JournalEntry.id == e.id)
                .values(content_hash=content, prev_hash=prev, hash=digest)
            )
            prev = digest
        await session.execute(
            update(Shard).where(Shard.k == shard).values(head_hash=prev, seq=chain[-1].seq)
        )


async def set_entry(db: Database, e: JournalEntry, **values: Any) -> None:
    async with db.write() as session:
        await session.execute(update(JournalEntry).where(JournalEntry.id == e.id).values(**values))


def where(e: JournalEntry) -> str:
    return f"journal entry {e.id} (shard {e.shard}, seq {e.seq}, {e.ref})"


def first_purchase(chain: list[JournalEntry]) -> JournalEntry:
    return next(e for e in chain[:-1] if e.kind == "purchase")


def member_posting(e: JournalEntry) -> tuple[int, int]:
    """(index in postings, member id) of the purchase's member points posting."""
    for i, (account, _unit, _amount) in enumerate(e.postings):
        if account.startswith("member:") and account.endswith(":points"):
            return i, int(account.split(":")[1])
    raise AssertionError(e.postings)


# --- the spoils: each returns the start of the first problem verify must report -------------

Spoil = Callable[[Database, World], Awaitable[str]]


async def chain_ignores_previous(db: Database, world: World) -> str:
    """An entry hashed from its content alone (unchained), everything after it re-hashed."""
    chain = await longest(db)
    e = chain[0]
    unlinked = hashlib.sha256(e.content_hash.encode()).hexdigest()
    await set_entry(db, e, hash=unlinked)
    await rechain(db, e.shard, start_prev=unlinked, from_seq=2)
    return f"{where(e)}: chain broken before this entry"


async def prev_hash_rewritten(db: Database, world: World) -> str:
    """The stored link to the predecessor altered, the entry's own hash left right."""
    chain = await longest(db)
    e = chain[1]
    await set_entry(db, e, prev_hash="f" * 64)
    return f"{where(e)}: chain broken before this entry"


def content_field(name: str, change: Callable[[JournalEntry], Any]) -> Spoil:
    async def spoil(db: Database, world: World) -> str:
        e = first_purchase(await longest(db))
        value = change(e)
        await set_entry(db, e, **{name: value})
        ref = value if name == "ref" else e.ref
        return f"journal entry {e.id} (shard {e.shard}, seq {e.seq}, {ref}): content does not"

    spoil.__name__ = f"{name}_altered"
    return spoil


async def entry_removed(db: Database, world: World) -> str:
    chain = await longest(db)
    async with db.write() as session:
        await session.execute(JournalEntry.__table__.delete().where(JournalEntry.id == chain[0].id))
    return f"{where(chain[1])}: expected seq 1; entries missing"


async def unbalanced_postings(db: Database, world: World) -> str:
    """One more point to the member than the entry takes from issuance; chain and balance
    repaired, so only the sum check can tell."""
    e = first_purchase(await longest(db))
    i, member = member_posting(e)
    postings = [list(p) for p in e.postings]
    postings[i][2] += 1
    await set_entry(db, e, postings=postings)
    await rechain(db, e.shard)
    async with db.write() as session:
        await session.execute(
            update(Member).where(Member.id == member).values(points=Member.points + 1)
        )
    return f"{where(e)}: postings do not sum to zero"


async def head_hash_altered(db: Database, world: World) -> str:
    chain = await longest(db)
    async with db.write() as session:
        await session.execute(
            update(Shard).where(Shard.k == chain[0].shard).values(head_hash="e" * 64)
        )
    return f"shard {chain[0].shard}: head says seq {chain[-1].seq}, chain ends at seq"


def shard_total(column: str) -> Spoil:
    async def spoil(db: Database, world: World) -> str:
        chain = await longest(db)
        async with db.write() as session:
            col = getattr(Shard, column)
            k = chain[0].shard
            await session.execute(update(Shard).where(Shard.k == k).values({col: col + 1}))
        return f"shard {chain[0].shard}: pool/issued/concessions "

    spoil.__name__ = f"shard_{column}_altered"
    return spoil


async def member_vouchers_altered(db: Database, world: World) -> str:
    """The member's voucher column and one of their lots both +1 fen: lots agree, journal not."""
    async with db.write() as session:
        lot = (await session.scalars(select(VoucherLot).order_by(VoucherLot.id).limit(1))).one()
        await session.execute(
            update(VoucherLot).where(VoucherLot.id == lot.id)
            .values(remaining_fen=VoucherLot.remaining_fen + 1)
        )
        await session.execute(
            update(Member).where(Member.id == lot.member_id)
            .values(vouchers_fen=Member.vouchers_fen + 1)
        )
    return f"account member:{lot.member_id}:vouchers: balance is"


def merchant_column(column: str, account: str) -> Spoil:
    async def spoil(db: Database, world: World) -> str:
        async with db.write() as session:
            col = getattr(MerchantBalance, column)
            shard = await session.scalar(
                select(func.min(MerchantBalance.shard))
                .where(MerchantBalance.merchant_id == world.merchant_id)
            )
            await session.execute(
                update(MerchantBalance)
                .where(MerchantBalance.merchant_id == world.merchant_id,
                       MerchantBalance.shard == shard)
                .values({col: col + 3})
            )
        return f"account merchant:{world.merchant_id}:{account}: balance is"

    spoil.__name__ = f"merchant_{column}_altered"
    return spoil


async def negative_account(db: Database, world: World) -> str:
    """A purchase entry rewritten so its member ends at -1 point and its merchant holds the
    difference; balanced, re-hashed, balance and purchase rows moved to match: only the sign
    check is left."""
    e = first_purchase(await longest(db))
    i, member = member_posting(e)
    async with db.read() as session:
        held = await session.scalar(select(Member.points).where(Member.id == member))
    assert held is not None and held > 0
    shift = held + 1
    postings = [list(p) for p in e.postings]
    postings[i][2] -= shift
    merchant = next(p for p in postings if p[0].startswith("merchant:") and p[1] == "pt")
    merchant[2] += shift
    merchant_id = int(merchant[0].split(":")[1])
    await set_entry(db, e, postings=postings)
    await rechain(db, e.shard)
    purchase_id = int(e.ref.split(":")[1])
    async with db.write() as session:
        await session.execute(update(Member).where(Member.id == member).values(points=-1))
        # The day's public record anchors the old heads; a forger drops it too (only
        # `verify --against` a copy kept elsewhere would still see the rewrite).
        await session.execute(delete(TransparencyDay))
        # The purchase row follows its rewritten entry, so the row check has nothing to say.
        await session.execute(
            update(Purchase)
            .where(Purchase.id == purchase_id)
            .values(
                member_points=Purchase.member_points - shift,
                merchant_points=Purchase.merchant_points + shift,
            )
        )
        await session.execute(
            update(MerchantBalance)
            .where(MerchantBalance.merchant_id == merchant_id, MerchantBalance.shard == e.shard)
            .values(points=MerchantBalance.points + shift)
        )
    return f"account member:{member}:points is negative: -1"


async def voucher_lot_altered(db: Database, world: World) -> str:
    async with db.write() as session:
        lot = (await session.scalars(select(VoucherLot).order_by(VoucherLot.id).limit(1))).one()
        await session.execute(
            update(VoucherLot).where(VoucherLot.id == lot.id)
            .values(remaining_fen=VoucherLot.remaining_fen + 5)
        )
    return f"member {lot.member_id}: voucher lots hold"


async def public_record_altered(db: Database, world: World) -> str:
    """Today's public record published, then its pool figure changed in the database: verify
    names the record by its day (the operator looks it up by that)."""
    published = await world.service.publish(SYSTEM)
    async with db.write() as session:
        await session.execute(
            update(TransparencyDay).values(pool_fen=TransparencyDay.pool_fen + 1)
        )
    return f"transparency record of {published.date}: its hash does not match"


SPOILS: list[Spoil] = [
    chain_ignores_previous,
    prev_hash_rewritten,
    content_field("kind", lambda e: "refund"),
    content_field("ref", lambda e: e.ref + "0"),
    content_field("created_at", lambda e: e.created_at + dt.timedelta(microseconds=1)),
    entry_removed,
    unbalanced_postings,
    head_hash_altered,
    shard_total("pool_fen"),
    shard_total("issued_points"),
    shard_total("concessions_fen"),
    member_vouchers_altered,
    merchant_column("points", "points"),
    merchant_column("settlement_fen", "settlement"),
    negative_account,
    voucher_lot_altered,
    public_record_altered,
]


@dataclass(frozen=True)
class Figures:
    entries: int
    accounts: int


async def independent_figures(db: Database) -> Figures:
    """What a clean ledger must add up to, from tables other than the shards' own columns."""
    all_chains = await chains(db)
    sums: dict[str, int] = defaultdict(int)
    per_shard: dict[int, list[int]] = {}
    for k, chain in all_chains.items():
        prev = GENESIS
        pool = issued = concessions = 0
        for n, e in enumerate(chain, start=1):
            assert e.seq == n
            assert e.content_hash == spec_content_hash(e), where(e)
            assert e.prev_hash == prev and e.hash == spec_chain_hash(prev, e.content_hash), where(e)
            prev = e.hash
            for account, _unit, amount in e.postings:
                if account == "pool":
                    pool += amount
                elif account == "issuance":
                    issued -= amount
                elif account == "concessions":
                    concessions -= amount
                else:
                    sums[account] += amount
        per_shard[k] = [pool, issued, concessions, len(chain), prev]
    async with db.read() as session:
        shards = (await session.scalars(select(Shard))).all()
        for s in shards:
            want = per_shard.get(s.k, [0, 0, 0, 0, GENESIS])
            assert [s.pool_fen, s.issued_points, s.concessions_fen, s.seq, s.head_hash] == want
        member_points = await session.scalar(select(func.sum(Member.points)))
        merchant_points = await session.scalar(select(func.sum(MerchantBalance.points)))
        conceded = await session.scalar(select(func.sum(Purchase.concession_fen)))
        released = await session.scalar(select(func.sum(Release.vouchers_fen)))
    issued = sum(v[1] for v in per_shard.values())
    assert issued == int(member_points or 0) + int(merchant_points or 0) > 0
    assert sum(v[2] for v in per_shard.values()) == int(conceded or 0) > 0
    assert sum(v[0] for v in per_shard.values()) == int(conceded or 0) - int(released or 0)
    assert int(released or 0) > 0
    return Figures(
        entries=sum(len(c) for c in all_chains.values()),
        accounts=sum(1 for v in sums.values() if v),
    )


async def test_clean_ledger_adds_up(world: World, database_url: str) -> None:
    await populate(world)
    db = world.service.ctx.db
    figures = await independent_figures(db)
    for partitions in (1, 3, 8):
        report = await verify.verify(world.service.ctx, partitions)
        assert report.ok, report.problems
        assert (report.entries, report.accounts) == (figures.entries, figures.accounts), partitions


@pytest.mark.parametrize("spoil", SPOILS, ids=lambda s: s.__name__)
async def test_each_check_catches_its_fault(world: World, database_url: str, spoil: Spoil) -> None:
    await populate(world)
    db = world.service.ctx.db
    expected = await spoil(db, world)
    for partitions in PARTITIONS:
        report = await verify.verify(world.service.ctx, partitions)
        assert not report.ok, (spoil.__name__, partitions)
        assert report.problems[0].startswith(expected), (partitions, expected, report.problems)


@pytest.mark.parametrize("spoil", [negative_account, merchant_column("points", "points")],
                         ids=lambda s: s.__name__)
async def test_the_console_script_with_partitions(
    world: World, database_url: str, spoil: Spoil
) -> None:
    """``greenpoints ledger verify --partitions 8`` exits 1 naming the fault first."""
    await populate(world)
    expected = await spoil(world.service.ctx.db, world)
    await world.service.ctx.db.dispose()
    run = await cli(database_url, "verify", "--partitions", "8")
    assert run.code == 1, (run.out, run.err)
    assert run.err.startswith(f"FAIL: {expected}"), run.err


async def test_reopening_a_ledger_keeps_its_chains(world: World, database_url: str) -> None:
    """A restart (every deploy) finds the shards there: no second set, no chain restarted."""
    await populate(world)
    heads = select(Shard.k, Shard.seq, Shard.head_hash).order_by(Shard.k)
    async with world.service.ctx.db.read() as session:
        before = [tuple(r) for r in (await session.execute(heads)).all()]
    again = await LedgerService.open(database_url)
    try:
        async with again.ctx.db.read() as session:
            after = [tuple(r) for r in (await session.execute(heads)).all()]
        assert after == before and len(before) == 16
        assert (await verify.verify(again.ctx)).ok
    finally:
        await again.close()
