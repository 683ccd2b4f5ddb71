"""Recompute every hash chain and every balance from the journal.

The journal is the truth; balances on members, merchants and shards are caches of it. The
verifier names the first entry whose hash does not match (an altered or removed entry) and
every account whose stored balance the journal does not explain (an altered balance row), and
(``verify_rows``) every purchase, redemption, code and event row that disagrees with it.

Hashes alone cannot catch a rewrite that recomputes every hash after the change. The daily
public records (``ledger.transparency``) pin each chain's head; the verifier holds the journal
to the records in the database and, with ``against``, to a copy of the published record kept
elsewhere, which a rewrite of this database cannot reach.
It streams entries in pages, so memory grows with the number of accounts, not of entries;
``partitions`` trades passes for memory when there are tens of millions of accounts.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from ledger import journal, transparency
from ledger.context import Ctx
from ledger.published_heads import PublishedRecord
from ledger.schema import (
    JournalEntry,
    Member,
    MerchantBalance,
    MintLot,
    Payout,
    Shard,
    TransparencyDay,
    VoucherLot,
)
from ledger.verify_rows import RowChecker

PAGE = 2000
# Accounts whose balance lives on the shards (pool, issuance, concessions) or nowhere (payouts:
# the outside world's side of a merchant payout); every other account has a stored balance.
_OUTSIDE = frozenset({journal.POOL, journal.ISSUANCE, journal.CONCESSIONS, journal.PAYOUTS})


@dataclass
class Report:
    entries: int = 0
    accounts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Anchors:
    """What the journal must show at given (shard, seq): published hashes, and the records
    whose figures are the journal's sums up to there."""

    hashes: dict[int, dict[int, list[tuple[str, str]]]] = field(default_factory=dict)
    records: dict[int, dict[int, list[int]]] = field(default_factory=dict)  # -> record indexes
    figures: dict[int, list[int]] = field(default_factory=dict)  # record index -> [pool, points]

    def expect(self, shard: int, seq: int, digest: str, label: str) -> None:
        self.hashes.setdefault(shard, {}).setdefault(seq, []).append((digest, label))

    def sum_at(self, shard: int, seq: int, index: int) -> None:
        self.records.setdefault(shard, {}).setdefault(seq, []).append(index)
        self.figures.setdefault(index, [0, 0])


def _owned(account: str, partition: int, partitions: int) -> bool:
    return partitions == 1 or zlib.crc32(account.encode()) % partitions == partition


async def _walk_chain(
    ctx: Ctx,
    shard: Shard,
    sums: dict[str, int],
    report: Report,
    partition: int,
    partitions: int,
    check_hashes: bool,
    anchors: Anchors,
    rows: RowChecker,
) -> None:
    prev, expected_seq, after = journal.GENESIS, 1, 0
    pool = issued = concessions = 0
    # A rewrite is reported after the chain itself checks out: the chain's own breaks name the
    # entry that was touched; a published head only says "somewhere before here".
    rewritten: str | None = None
    expected_hashes = anchors.hashes.get(shard.k, {})
    record_points = anchors.records.get(shard.k, {})
    while True:
        async with ctx.db.read() as session:
            page = (
                await session.scalars(
                    select(JournalEntry)
                    .where(JournalEntry.shard == shard.k, JournalEntry.seq > after)
                    .order_by(JournalEntry.seq)
                    .limit(PAGE)
                )
            ).all()
        if not page:
            break
        for e in page:
            after = e.seq
            if check_hashes:
                report.entries += 1
                content = journal.content_hash(
                    e.shard, e.seq, e.kind, e.ref, e.created_at, e.postings
                )
                where = f"journal entry {e.id} (shard {e.shard}, seq {e.seq}, {e.ref})"
                if e.seq != expected_seq:
                    report.problems.append(f"{where}: expected seq {expected_seq}; entries missing")
                elif content != e.content_hash:
                    report.problems.append(f"{where}: content does not match its hash")
                elif e.prev_hash != prev or journal.chain_hash(prev, content) != e.hash:
                    report.problems.append(f"{where}: chain broken before this entry")
                sums_by_unit: dict[str, int] = defaultdict(int)
                for _a, unit, amount in e.postings:
                    sums_by_unit[unit] += amount
                if any(sums_by_unit.values()):
                    report.problems.append(f"{where}: postings do not sum to zero")
                if report.problems:
                    return
                prev, expected_seq = e.hash, e.seq + 1
                for digest, label in expected_hashes.get(e.seq, ()):
                    if digest != e.hash and rewritten is None:
                        rewritten = (
                            f"{where}: its hash differs from {label}; history was rewritten "
                            f"at or before this entry"
                        )
            delta = journal.shard_delta((a, u, n) for a, u, n in e.postings)
            pool += delta.pool_fen
            issued += delta.issued_points
            concessions += delta.concessions_fen
            if check_hashes:
                for index in record_points.get(e.seq, ()):
                    anchors.figures[index][0] += pool
                    anchors.figures[index][1] += issued
            for account, _unit, amount in e.postings:
                if account not in _OUTSIDE and _owned(
                    account, partition, partitions
                ):
                    sums[account] += amount
        if check_hashes:
            await rows.page(ctx, page, report.problems)
            if report.problems:
                return
    if check_hashes:
        if shard.seq != after or shard.head_hash != prev:
            report.problems.append(
                f"shard {shard.k}: head says seq {shard.seq}, chain ends at seq {after}"
            )
        for seq in sorted(s for s in expected_hashes if s > after):
            for _digest, label in expected_hashes[seq]:
                report.problems.append(
                    f"shard {shard.k}: {label} reach seq {seq} but the chain ends at seq "
                    f"{after}; entries were removed"
                )
        for digest, label in expected_hashes.get(0, ()):
            if digest != journal.GENESIS:
                report.problems.append(f"shard {shard.k}: {label} start from another chain")
        if rewritten is not None:
            report.problems.append(rewritten)
        if (pool, issued, concessions) != (
            shard.pool_fen,
            shard.issued_points,
            shard.concessions_fen,
        ):
            report.problems.append(
                f"shard {shard.k}: pool/issued/concessions {shard.pool_fen}/{shard.issued_points}/"
                f"{shard.concessions_fen} but the journal says {pool}/{issued}/{concessions}"
            )


async def _stored_balances(ctx: Ctx, partition: int, partitions: int) -> dict[str, int]:
    stored: dict[str, int] = {}
    after = 0
    while True:
        async with ctx.db.read() as session:
            rows = (
                await session.execute(
                    select(Member.id, Member.points, Member.vouchers_fen)
                    .where(Member.id > after)
                    .order_by(Member.id)
                    .limit(PAGE * 5)
                )
            ).all()
        if not rows:
            break
        for member_id, points, vouchers in rows:
            for account, value in (
                (journal.member_points(member_id), points),
                (journal.member_vouchers(member_id), vouchers),
            ):
                if value and _owned(account, partition, partitions):
                    stored[account] = value
        after = rows[-1][0]
    async with ctx.db.read() as session:
        merchant_rows = (
            await session.execute(
                select(
                    MerchantBalance.merchant_id,
                    func.sum(MerchantBalance.points),
                    func.sum(MerchantBalance.settlement_fen),
                ).group_by(MerchantBalance.merchant_id)
            )
        ).all()
        paid_rows = (
            await session.execute(
                select(Payout.merchant_id, func.sum(Payout.amount_fen)).group_by(
                    Payout.merchant_id
                )
            )
        ).all()
    for merchant_id, points, settlement in merchant_rows:
        for account, value in (
            (journal.merchant_points(merchant_id), int(points)),
            (journal.merchant_settlement(merchant_id), int(settlement)),
        ):
            if value and _owned(account, partition, partitions):
                stored[account] = value
    for merchant_id, paid in paid_rows:
        account = journal.merchant_payouts(merchant_id)
        if paid and _owned(account, partition, partitions):
            stored[account] = int(paid)
    return stored


def _check_records(
    records: list[TransparencyDay],
    anchors: Anchors,
    against: Sequence[PublishedRecord],
    report: Report,
) -> None:
    """The stored records' own chain, their figures against the journal, and the copy."""
    prev = journal.GENESIS
    for index, r in enumerate(records):
        expected = transparency.record_hash(
            prev, r.day, r.published_at, r.pool_fen, r.points, r.heads
        )
        where = f"transparency record of {r.day}"
        if r.prev_hash != prev or r.hash != expected:
            report.problems.append(
                f"{where}: its hash does not match its content and the record before it"
            )
        pool, points = anchors.figures.get(index, [0, 0])
        if (pool, points) != (r.pool_fen, r.points):
            report.problems.append(
                f"{where}: pool/points {r.pool_fen}/{r.points} but the journal up to its heads "
                f"says {pool}/{points}"
            )
        prev = r.hash
    by_day = {r.day: r for r in records}
    for published in against:
        if published.date is None or published.hash is None:
            continue
        stored = by_day.get(published.date)
        if stored is None:
            report.problems.append(
                f"transparency record of {published.date}: published, but not in this database"
            )
        elif stored.hash != published.hash:
            report.problems.append(
                f"transparency record of {published.date}: differs from the published copy"
            )


async def verify(
    ctx: Ctx, partitions: int = 1, against: Sequence[PublishedRecord] = ()
) -> Report:
    """Check the journal, every cached balance, the public records and, with ``against``, a
    published copy of the records; ``report.problems[0]`` names the first thing that is wrong."""
    report = Report()
    async with ctx.db.read() as session:
        shards = list((await session.scalars(select(Shard).order_by(Shard.k))).all())
        records = list(
            (await session.scalars(select(TransparencyDay).order_by(TransparencyDay.id))).all()
        )
    anchors = Anchors()
    for index, r in enumerate(records):
        for k, seq, digest in r.heads:
            anchors.expect(int(k), int(seq), str(digest), f"the record of {r.day}")
            anchors.sum_at(int(k), int(seq), index)
    for published in against:
        for a in published.anchors:
            anchors.expect(a.shard, a.seq, a.hash, a.label)
    rows = RowChecker()
    await rows.prepare(ctx)
    for partition in range(partitions):
        sums: dict[str, int] = defaultdict(int)
        for shard in shards:
            await _walk_chain(
                ctx,
                shard,
                sums,
                report,
                partition,
                partitions,
                check_hashes=partition == 0,
                anchors=anchors,
                rows=rows,
            )
            if report.problems:
                return report
        if partition == 0:
            walked = {s.k for s in shards}
            for k in sorted(set(anchors.hashes) - walked):
                seq = max(anchors.hashes[k])
                label = anchors.hashes[k][seq][0][1]
                if seq > 0:
                    report.problems.append(
                        f"shard {k}: {label} reach seq {seq} but the shard is gone"
                    )
            if report.problems:
                return report
            _check_records(records, anchors, against, report)
            if report.problems:
                return report
            await rows.finish(ctx, report.problems)
            if report.problems:
                return report
        stored = await _stored_balances(ctx, partition, partitions)
        report.accounts += len(set(stored) | {a for a, v in sums.items() if v})
        for account in sorted(set(stored) | set(sums)):
            if stored.get(account, 0) != sums.get(account, 0):
                report.problems.append(
                    f"account {account}: balance is {stored.get(account, 0)} but the journal "
                    f"says {sums.get(account, 0)}"
                )
        for account, value in sums.items():
            # A payout's sign says who paid whom (ledger/payouts.py): the one signed balance.
            if value < 0 and not account.endswith(":payouts"):
                report.problems.append(f"account {account} is negative: {value}")
    async with ctx.db.read() as session:
        lot_sums = dict(
            (
                await session.execute(
                    select(VoucherLot.member_id, func.sum(VoucherLot.remaining_fen)).group_by(
                        VoucherLot.member_id
                    )
                )
            ).all()
        )
        member_vouchers = dict(
            (
                await session.execute(
                    select(Member.id, Member.vouchers_fen).where(Member.vouchers_fen != 0)
                )
            ).all()
        )
    for member_id in sorted(set(lot_sums) | set(member_vouchers)):
        if int(lot_sums.get(member_id, 0)) != member_vouchers.get(member_id, 0):
            report.problems.append(
                f"member {member_id}: voucher lots hold {lot_sums.get(member_id, 0)} fen but the "
                f"balance is {member_vouchers.get(member_id, 0)}"
            )
    # Mint lots (issue 13's exit cap) never hold more points than their member, nor fewer than 0.
    held = (
        select(MintLot.member_id, func.sum(MintLot.points_left).label("held"))
        .group_by(MintLot.member_id)
        .having(func.min(MintLot.points_left) >= 0)
        .subquery()
    )
    async with ctx.db.read() as session:
        over = (
            await session.execute(
                select(MintLot.member_id, func.min(MintLot.points_left))
                .group_by(MintLot.member_id)
                .having(func.min(MintLot.points_left) < 0)
                .order_by(MintLot.member_id)
                .limit(1)
            )
        ).first()
        beyond = (
            await session.execute(
                select(Member.id, held.c.held, Member.points)
                .join(held, held.c.member_id == Member.id)
                .where(held.c.held > Member.points)
                .order_by(Member.id)
                .limit(1)
            )
        ).first()
    if over is not None:
        report.problems.append(f"member {over[0]}: a mint lot holds {over[1]} points")
    if beyond is not None:
        report.problems.append(
            f"member {beyond[0]}: mint lots hold {beyond[1]} points but the balance is {beyond[2]}"
        )
    return report
