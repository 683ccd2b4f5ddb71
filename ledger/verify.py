"""Recompute every hash chain and every balance from the journal.

The journal is the truth; balances on members, merchants and shards are caches of it. The
verifier names the first entry whose hash does not match (an altered or removed entry) and
every account whose stored balance the journal does not explain (an altered balance row).
It streams entries in pages, so memory grows with the number of accounts, not of entries;
``partitions`` trades passes for memory when there are tens of millions of accounts.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select

from ledger import journal
from ledger.context import Ctx
from ledger.schema import JournalEntry, Member, MerchantBalance, Shard, VoucherLot

PAGE = 2000


@dataclass
class Report:
    entries: int = 0
    accounts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


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
) -> None:
    prev, expected_seq, after = journal.GENESIS, 1, 0
    pool = issued = concessions = 0
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
            delta = journal.shard_delta((a, u, n) for a, u, n in e.postings)
            pool += delta.pool_fen
            issued += delta.issued_points
            concessions += delta.concessions_fen
            for account, _unit, amount in e.postings:
                if account not in (journal.POOL, journal.ISSUANCE, journal.CONCESSIONS) and _owned(
                    account, partition, partitions
                ):
                    sums[account] += amount
    if check_hashes:
        if shard.seq != after or shard.head_hash != prev:
            report.problems.append(
                f"shard {shard.k}: head says seq {shard.seq}, chain ends at seq {after}"
            )
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
    for merchant_id, points, settlement in merchant_rows:
        for account, value in (
            (journal.merchant_points(merchant_id), int(points)),
            (journal.merchant_settlement(merchant_id), int(settlement)),
        ):
            if value and _owned(account, partition, partitions):
                stored[account] = value
    return stored


async def verify(ctx: Ctx, partitions: int = 1) -> Report:
    report = Report()
    async with ctx.db.read() as session:
        shards = list((await session.scalars(select(Shard).order_by(Shard.k))).all())
    for partition in range(partitions):
        sums: dict[str, int] = defaultdict(int)
        for shard in shards:
            await _walk_chain(
                ctx, shard, sums, report, partition, partitions, check_hashes=partition == 0
            )
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
            if value < 0:
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
    return report
