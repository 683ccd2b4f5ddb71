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

from sqlalchemy import ColumnElement, ScalarSelect, Select, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.db import Bound, Conn, Statement, batch, column_params
from ledger.schema import JournalEntry, Shard

GENESIS = "0" * 64
POINTS = "pt"
FEN = "fen"
POOL = "pool"
ISSUANCE = "issuance"
CONCESSIONS = "concessions"
# Money that left or reached the alliance in merchant payouts (the outside world, like
# CONCESSIONS); each merchant's side is ``merchant_payouts`` (ledger/payouts.py).
PAYOUTS = "payouts"


def member_points(member_id: int) -> str:
    return f"member:{member_id}:points"


def member_vouchers(member_id: int) -> str:
    return f"member:{member_id}:vouchers"


def merchant_points(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:points"


def merchant_settlement(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:settlement"


def merchant_payouts(merchant_id: int) -> str:
    """What the alliance has paid the merchant in payouts, net (negative: the merchant paid)."""
    return f"merchant:{merchant_id}:payouts"


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


_shards = Shard.metadata.tables[Shard.__tablename__]
_entries = JournalEntry.metadata.tables[JournalEntry.__tablename__]


def head_lock(*before: ColumnElement[Any]) -> Select[Any]:
    """The head (seq, hash) of shard ``k``, locked, after the columns ``before``: what ``post``
    starts with, to ride along the statement just before it (a purchase's row, on PostgreSQL)."""
    return (
        select(*before, _shards.c.seq, _shards.c.head_hash)
        .where(_shards.c.k == bindparam("k"))
        .with_for_update(of=_shards)
    )


_LOCK_HEAD = Statement(head_lock())
_MOVE_SHARD = Statement(
    update(_shards)
    .where(_shards.c.k == bindparam("k"))
    .values(
        seq=bindparam("new_seq", type_=_shards.c.seq.type),
        head_hash=bindparam("new_head", type_=_shards.c.head_hash.type),
        pool_fen=_shards.c.pool_fen + bindparam("d_pool", type_=_shards.c.pool_fen.type),
        issued_points=_shards.c.issued_points
        + bindparam("d_issued", type_=_shards.c.issued_points.type),
        concessions_fen=_shards.c.concessions_fen
        + bindparam("d_concessions", type_=_shards.c.concessions_fen.type),
    )
)
_APPEND = Statement(insert(_entries).values(column_params(_entries)).returning(_entries.c.id))
TOTAL_POOL = func.coalesce(func.sum(_shards.c.pool_fen), 0)
TOTAL_POINTS = func.coalesce(func.sum(_shards.c.issued_points), 0)
_TOTALS = Statement(select(TOTAL_POOL, TOTAL_POINTS))


def totals_subqueries() -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """What ``totals`` reads, as two scalar subqueries to ride along another statement."""
    return select(TOTAL_POOL).scalar_subquery(), select(TOTAL_POINTS).scalar_subquery()


async def post(
    session: Conn,
    *,
    shard: int,
    kind: str,
    ref: str,
    postings: Sequence[Posting],
    now: dt.datetime,
    also: Sequence[Bound] = (),
) -> int:
    """Append one balanced entry to ``shard``'s chain and move the shard's slices; returns its id.

    Callers post last in their transaction, after locking members and merchants, so the shard
    lock (the most contended) is held for the shortest time and always taken in the same order.
    ``also``: statements independent of the entry that the caller wants done under the shard's
    lock (a merchant's slice, an event), sent with it — on PostgreSQL in the same round trip.
    """
    return await append(
        session,
        shard=shard,
        head=await lock_head(session, shard),
        kind=kind,
        ref=ref,
        postings=postings,
        now=now,
        also=also,
    )


async def append(
    session: Conn,
    *,
    shard: int,
    head: tuple[int, str],
    kind: str,
    ref: str,
    postings: Sequence[Posting],
    now: dt.datetime,
    also: Sequence[Bound] = (),
) -> int:
    """The rest of ``post`` once the shard's ``head`` (seq, hash) is read under its lock."""
    check_balanced(postings)
    head_seq, head_hash = head
    seq = head_seq + 1
    content = content_hash(shard, seq, kind, ref, now, postings)
    digest = chain_hash(head_hash, content)
    delta = shard_delta(postings)
    move = _MOVE_SHARD.bind(
        k=shard,
        new_seq=seq,
        new_head=digest,
        d_pool=delta.pool_fen,
        d_issued=delta.issued_points,
        d_concessions=delta.concessions_fen,
    )
    entry = _APPEND.bind(
        p_shard=shard,
        p_seq=seq,
        p_kind=kind,
        p_ref=ref,
        p_created_at=now,
        p_postings=[list(p) for p in postings],
        p_content_hash=content,
        p_prev_hash=head_hash,
        p_hash=digest,
    )
    [(entry_id,)] = await batch(session, *also, move, entry)
    return int(entry_id)


async def lock_head(session: Conn, shard: int) -> tuple[int, str]:
    """The head (seq, hash) of ``shard``'s chain, locked until the transaction ends."""
    head_seq, head_hash = await _LOCK_HEAD.one(session, k=shard)
    return int(head_seq), str(head_hash)


async def totals(session: Conn) -> tuple[int, int]:
    """Pool (fen) and points in circulation, summed over all shards."""
    pool, points = await _TOTALS.one(session)
    return int(pool), int(points)
