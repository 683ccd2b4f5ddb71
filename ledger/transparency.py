"""The public record (DESIGN.md "The seeds' other rules", issue 13): pool, points, price, heads.

Once a day, after the release, the ledger writes one record: the heads (shard, seq, hash) of
every journal chain and the pool (fen) and points in circulation the journal sums to up to
exactly those heads. The heads and the figures are read from the shard rows in one locked read,
so they are one consistent moment; the shard rows are caches of the journal, and ``verify``
re-derives every record's figures from the entries themselves. Records are chained by hash in
the order they were written, and never changed: anyone who keeps a copy of the public record
can later prove that the journal up to those heads is the one that was published
(``greenpoints ledger verify --against``), even if history was rewritten and re-hashed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from ledger.context import Ctx
from ledger.db import insert_on_conflict
from ledger.errors import PublishDateRefused
from ledger.journal import GENESIS
from ledger.models import PublicDay, PublicPoolOut, PublishedHead
from ledger.money import Price
from ledger.purchases import current_price
from ledger.schema import Shard, TransparencyDay

MAX_DAYS = 3660


def record_hash(
    prev_hash: str,
    day: dt.date,
    published_at: dt.datetime,
    pool_fen: int,
    points: int,
    heads: Sequence[Sequence[Any]],
) -> str:
    """SHA-256 of the previous record's hash and this record's canonical JSON."""
    body = {
        "date": day.isoformat(),
        "published_at": published_at.isoformat(timespec="microseconds"),
        "pool_fen": pool_fen,
        "points": points,
        "heads": [[int(k), int(s), str(h)] for k, s, h in heads],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def day_out(row: TransparencyDay) -> PublicDay:
    return PublicDay(
        date=row.day,
        published_at=row.published_at,
        pool_fen=row.pool_fen,
        points=row.points,
        fen_per_point=Price(row.pool_fen, row.points).fen_per_point(),
        heads=[PublishedHead(shard=k, seq=s, hash=h) for k, s, h in row.heads],
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


async def publish(ctx: Ctx, day: dt.date | None = None) -> PublicDay:
    """Write the record of local ``day`` (default today) unless it exists; returns the record.

    Takes every shard's lock, in order, for one read and one insert (as a release's merchant
    batch does): the heads and figures are then one moment, and two publishers take turns, so
    the record chain never forks. Idempotent per day: a second call returns the first record.
    """
    day = day or ctx.today()
    async with ctx.db.write() as session:
        shards = (
            await session.execute(
                select(Shard.k, Shard.seq, Shard.head_hash, Shard.pool_fen, Shard.issued_points)
                .order_by(Shard.k)
                .with_for_update()
            )
        ).all()
        existing = await session.scalar(select(TransparencyDay).where(TransparencyDay.day == day))
        if existing is not None:
            return day_out(existing)
        today = ctx.today()
        newest = await session.scalar(select(func.max(TransparencyDay.day)))
        if day > today or (newest is not None and day < newest):
            raise PublishDateRefused(
                f"{day} cannot be published: records follow the calendar, from the newest "
                f"({newest or 'none yet'}) up to today ({today}, local time)",
                date=day.isoformat(),
                today=today.isoformat(),
                newest=newest.isoformat() if newest else None,
            )
        last = await session.scalar(
            select(TransparencyDay.hash).order_by(TransparencyDay.id.desc()).limit(1)
        )
        prev = last or GENESIS
        heads = [[int(k), int(seq), str(head)] for k, seq, head, _p, _i in shards]
        pool = sum(int(r[3]) for r in shards)
        points = sum(int(r[4]) for r in shards)
        now = ctx.now()
        await session.execute(
            insert_on_conflict(session, TransparencyDay)
            .values(
                day=day,
                published_at=now,
                pool_fen=pool,
                points=points,
                heads=heads,
                prev_hash=prev,
                hash=record_hash(prev, day, now, pool, points, heads),
            )
            .on_conflict_do_nothing()
        )
        row = await session.scalar(select(TransparencyDay).where(TransparencyDay.day == day))
        assert row is not None
        return day_out(row)


async def public_pool(ctx: Ctx, days: int = 90) -> PublicPoolOut:
    """Today's figures and the newest ``days`` records (1 to ``MAX_DAYS``), oldest first."""
    days = max(1, min(MAX_DAYS, days))
    async with ctx.db.read() as session:
        price = await current_price(session)
        rows = list(
            (
                await session.scalars(
                    select(TransparencyDay).order_by(TransparencyDay.day.desc()).limit(days)
                )
            ).all()
        )
    return PublicPoolOut(
        as_of=ctx.now(),
        pool_fen=price.pool_fen,
        points=price.points,
        fen_per_point=price.fen_per_point(),
        days=[day_out(r) for r in reversed(rows)],
    )
