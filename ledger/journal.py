"""Double-entry postings, chained by SHA-256 per shard.

Each entry is appended to the hash chain of one shard while that shard's row is locked, and the
same lock covers the shard's slice of the pool and of the points issued: one row lock per
transaction, spread over ``Rules.shards`` rows, instead of a global queue.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.schema import JournalEntry, Shard

GENESIS = "0" * 64
POINTS = "pt"
FEN = "fen"
POOL = "pool"
ISSUANCE = "issuance"
CONCESSIONS = "concessions"


def member_points(member_id: int) -> str:
    return f"member:{member_id}:points"


def member_vouchers(member_id: int) -> str:
    return f"member:{member_id}:vouchers"


def merchant_points(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:points"


def merchant_settlement(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:settlement"


Posting = tuple[str, str, int]  # account, unit, amount


@dataclass(frozen=True)
class ShardDelta:
    """How an entry moves its shard's slices; derived from its postings."""

    pool_fen: int = 0
    issued_points: int = 0
    concessions_fen: int = 0


def shard_delta(postings: Iterable[Posting]) -> ShardDelta:
    pool = issued = concessions = 0
    for account, _unit, amount in postings:
        if account == POOL:
            pool += amount
        elif account == ISSUANCE:
            issued -= amount  # the issuance account goes negative as points circulate
        elif account == CONCESSIONS:
            concessions -= amount
    return ShardDelta(pool, issued, concessions)


def check_balanced(postings: Sequence[Posting]) -> None:
    sums: dict[str, int] = defaultdict(int)
    for _account, unit, amount in postings:
        sums[unit] += amount
    unbalanced = {unit: total for unit, total in sums.items() if total}
    if unbalanced:
        raise AssertionError(f"unbalanced journal entry: {unbalanced}")


def content_hash(
    shard: int, seq: int, kind: str, ref: str, created_at: dt.datetime, postings: Sequence[Any]
) -> str:
    body = {
        "shard": shard,
        "seq": seq,
        "kind": kind,
        "ref": ref,
        "created_at": created_at.isoformat(timespec="microseconds"),
        "postings": [list(p) for p in postings],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


def pick_shard(shards: int) -> int:
    return random.randrange(shards)


async def ensure_shards(session: AsyncSession, shards: int) -> None:
    existing = set((await session.scalars(select(Shard.k))).all())
    missing = [
        {
            "k": k,
            "pool_fen": 0,
            "issued_points": 0,
            "concessions_fen": 0,
            "seq": 0,
            "head_hash": GENESIS,
        }
        for k in range(shards)
        if k not in existing
    ]
    if missing:
        await session.execute(insert(Shard), missing)


async def post(
    session: AsyncSession,
    *,
    shard: int,
    kind: str,
    ref: str,
    postings: Sequence[Posting],
    now: dt.datetime,
) -> int:
    """Append one balanced entry to ``shard``'s chain and move the shard's slices; returns its id.

    Callers post last in their transaction, after locking members and merchants, so the shard
    lock (the most contended) is held for the shortest time and always taken in the same order.
    """
    check_balanced(postings)
    head = (
        await session.execute(
            select(Shard.seq, Shard.head_hash).where(Shard.k == shard).with_for_update()
        )
    ).one()
    seq = head.seq + 1
    content = content_hash(shard, seq, kind, ref, now, postings)
    digest = chain_hash(head.head_hash, content)
    delta = shard_delta(postings)
    await session.execute(
        update(Shard)
        .where(Shard.k == shard)
        .values(
            seq=seq,
            head_hash=digest,
            pool_fen=Shard.pool_fen + delta.pool_fen,
            issued_points=Shard.issued_points + delta.issued_points,
            concessions_fen=Shard.concessions_fen + delta.concessions_fen,
        )
    )
    entry_id = await session.scalar(
        insert(JournalEntry)
        .values(
            shard=shard,
            seq=seq,
            kind=kind,
            ref=ref,
            created_at=now,
            postings=[list(p) for p in postings],
            content_hash=content,
            prev_hash=head.head_hash,
            hash=digest,
        )
        .returning(JournalEntry.id)
    )
    assert entry_id is not None
    return int(entry_id)


async def totals(session: AsyncSession) -> tuple[int, int]:
    """Pool (fen) and points in circulation, summed over all shards."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(Shard.pool_fen), 0),
                func.coalesce(func.sum(Shard.issued_points), 0),
            )
        )
    ).one()
    return int(row[0]), int(row[1])
