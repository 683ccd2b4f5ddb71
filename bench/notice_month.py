"""Thirty days of an alliance's notices under the notice policy (issue 12), hour by hour.

    .venv/bin/python -m bench.notice_month                    # 10,000 members, SQLite
    .venv/bin/python -m bench.notice_month --members 20000 --db postgres

What runs is the bot's own event reader (``bot.outbox.event_reader``: policy, holding,
gathering, pruning) on a real bot database, with an injected clock, fed by a synthetic ledger
feed: every day 2 % of members buy something (a receipt each, during shopping hours), the daily
release at 02:00 local grants vouchers to every member (all hold points), and — the steady state
of an alliance past its first 90 days, the worst case — every member also gets the ledger's
daily ``voucher.expiring`` event (their next lot entering the 3-day horizon, none used). Each
hour, what the reader made due is counted and marked sent (the sender is measured in
bench/outbox.py). Members are scaled down (``--members``) and the figures extrapolated linearly
to 1,000,000: every per-member quantity here is independent of the others.

The baseline, in the same script, is one day's Telegram capacity at 30 messages/s (2,592,000);
the aim is at most 40 % of it per day. The bot database's size is printed per day (live pages
on SQLite, the bot tables' ``pg_total_relation_size`` on PostgreSQL), after the daily pruning of
rows that ended more than the retention window ago (and, on PostgreSQL, a plain ``VACUUM`` of
the outbox: autovacuum's work over a real day, which a simulated day of seconds does not get).
The ledger's own database is not simulated here.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import time
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, text, update

from bench._common import scratch_database
from bot.config import Settings
from bot.outbox.event_reader import EventReader, ReaderTuning
from bot.services import Services
from bot.storage import outbox
from bot.storage.db import BotDatabase
from bot.storage.schema import Chat, OutboxMessage
from ledger_client.models import Event, EventsPage

CAPACITY = 30 * 86_400  # Telegram: about 30 messages/s to different chats
TARGET = 1_000_000
ZONE = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2026, 11, 1, 16, 0)  # Monday 2 November 2026, 00:00 in Shanghai


class Feed:
    """The ledger's event feed, as much of it as the reader has not read yet."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.base = 0  # the seq before events[0]
        self.seq = 0

    def add(self, type_: str, member_id: int, at: dt.datetime, payload: dict[str, Any]) -> None:
        self.seq += 1
        self.events.append(
            Event.model_construct(id=self.seq, seq=self.seq, type=type_, member_id=member_id,
                                  merchant_id=None, payload=payload, created_at=at)
        )

    async def events_page(self, after: int, limit: int) -> EventsPage:
        start = max(0, after - self.base)
        page = self.events[start : start + limit]
        return EventsPage.model_construct(
            events=page, next_after=page[-1].seq if page else after
        )

    def forget(self, upto: int) -> None:
        drop = max(0, upto - self.base)
        del self.events[:drop]
        self.base += drop


class FeedClient:
    """What the reader calls on the ledger: ``events`` only."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    async def events(self, after: int = 0, limit: int = 100) -> EventsPage:
        return await self.feed.events_page(after, limit)


async def seed_chats(db: BotDatabase, members: int) -> None:
    now = START
    rows = [
        {"channel": "telegram", "address": str(1_000_000 + m), "member_id": m,
         "locale": ("zh_Hans", "zh_Hant", "en")[m % 3], "locale_chosen": False,
         "notices": True, "created_at": now, "last_seen_at": now}
        for m in range(1, members + 1)
    ]
    for i in range(0, len(rows), 5000):
        async with db.session() as session:
            await session.execute(insert(Chat), rows[i : i + 5000])


async def db_size(db: BotDatabase) -> int:
    async with db.session() as session:
        if db.is_sqlite:
            pages = int(await session.scalar(text("PRAGMA page_count")) or 0)
            free = int(await session.scalar(text("PRAGMA freelist_count")) or 0)
            size = int(await session.scalar(text("PRAGMA page_size")) or 0)
            return (pages - free) * size
        # The bot's tables with their indexes and TOAST, not the empty database's catalogs
        # (which would be multiplied by the scale like everything else).
        return int(await session.scalar(text(
            "SELECT sum(pg_total_relation_size(c)) FROM"
            " unnest(ARRAY['outbox', 'chats', 'cursors']::regclass[]) AS c"
        )) or 0)


async def send_due(db: BotDatabase, at: dt.datetime) -> Counter[int]:
    """Everything pending is 'sent' now; returns how many per priority."""
    async with db.session() as session:
        rows = await session.execute(
            select(OutboxMessage.priority, func.count())
            .where(OutboxMessage.state == outbox.PENDING)
            .group_by(OutboxMessage.priority)
        )
        counts = Counter({int(p): int(n) for p, n in rows.all()})
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.state == outbox.PENDING)
            .values(state=outbox.SENT, sent_at=at)
        )
    return counts


def local(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.UTC).astimezone(ZONE)


async def simulate(url: str, members: int, days: int, seed: int) -> None:
    rng = random.Random(seed)
    db = BotDatabase(url)
    await db.upgrade()
    await seed_chats(db, members)
    feed = Feed()
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    services = Services(settings, FeedClient(feed), db)  # type: ignore[arg-type]
    clock = {"now": START}
    reader = EventReader(
        services, clock=lambda: clock["now"],
        tuning=ReaderTuning(prune_every=float("inf")),
    )
    await reader.position()
    scale = TARGET / members
    print(f"members {members:,} (figures ×{scale:,.0f} for 1,000,000), days {days}, "
          f"retention {settings.outbox_retention_days} d, digest {settings.notice_digest_default}"
          f", quiet {settings.quiet_hours}; load {os.getloadavg()}")
    print(f"baseline: Telegram's day at 30/s = {CAPACITY:,} messages; aim ≤ 40 %")
    print("day  receipts  warnings  digests    total/day@1M  share   bot DB live@1M   s")
    worst = 0.0
    for day in range(days):
        started = time.perf_counter()
        sent: Counter[int] = Counter()
        buyers = rng.sample(range(1, members + 1), max(1, members * 2 // 100))
        by_hour: dict[int, list[int]] = {}
        for m in buyers:  # shopping hours 08:00–21:59 local
            by_hour.setdefault(rng.randrange(8, 22), []).append(m)
        for hour in range(24):
            now = START + dt.timedelta(days=day, hours=hour)
            clock["now"] = now
            local_hour = local(now).hour
            if local_hour == 2:  # the daily release, and the lots entering the horizon
                expires = (now + dt.timedelta(days=90)).isoformat()
                soon = (now + dt.timedelta(days=3)).isoformat()
                release = local(now).date().isoformat()
                for m in range(1, members + 1):
                    capped = rng.random() < 0.01
                    feed.add("voucher.granted", m, now, {
                        "vouchers_fen": rng.randrange(1, 300), "points_burned": 50,
                        "expires_at": expires, "release_date": release,
                        **({"capped": True} if capped else {}),
                    })
                    feed.add("voucher.expiring", m, now,
                             {"vouchers_fen": rng.randrange(1, 300), "expires_at": soon})
            for m in by_hour.get(local_hour, []):
                feed.add("points.earned", m, now, {"points": 120, "amount_fen": 8850,
                                                    "merchant_name": "锦城绿色生活超市"})
            await reader.catch_up()
            feed.forget(await reader.position())
            sent += await send_due(db, now)
        clock["now"] = START + dt.timedelta(days=day + 1)
        await reader.prune()
        if not db.is_sqlite:  # autovacuum's work over a real day; a simulated one lasts seconds
            async with db.engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.execute(text("VACUUM outbox"))
        size = await db_size(db)
        total = sum(sent.values())
        share = total * scale / CAPACITY
        worst = max(worst, share)
        print(f"{day + 1:>3}  {sent[outbox.NOTICE]:>8,}  {sent[outbox.EXPIRING]:>8,}  "
              f"{sent[outbox.DIGEST]:>7,}  {total * scale:>14,.0f}  {share:>5.1%}  "
              f"{size * scale / 2**30:>11.2f} GiB  {time.perf_counter() - started:>5.1f}")
    async with db.session() as session:
        held = int(await session.scalar(
            select(func.count()).select_from(OutboxMessage)
            .where(OutboxMessage.state == outbox.HELD)) or 0)
    print(f"worst day: {worst:.1%} of Telegram's capacity (aim ≤ 40 %); rows still held "
          f"(next digests and warnings): {held:,}; load {os.getloadavg()}")
    await reader.release()
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()

    async def run() -> None:
        async with scratch_database(args.db, "notice-month") as url:
            await simulate(url, args.members, args.days, args.seed)

    asyncio.run(run())


if __name__ == "__main__":
    main()
