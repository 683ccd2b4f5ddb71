"""Announcements at scale: enqueueing time and memory, and drain rate against an enforced limit.

    .venv/bin/python -m bench.broadcast enqueue [--db sqlite|postgres] [--sizes 100000,1000000]
    .venv/bin/python -m bench.broadcast drain [--db …] [--recipients 100000] [--rates 1000]
                                              [--seconds 60]

``enqueue`` fills the bot's chats table with N people, then times ``Broadcasts.enqueue_all``
and records the Python heap's peak (tracemalloc) while it runs. The baseline is the same work at
the smallest size: memory is flat when peak(N) ÷ peak(smallest) stays near 1 as N grows.

``drain`` enqueues one announcement to ``--recipients`` people and lets the production sender
(its own process, tests/sender_process.py) send it to the fake Bot API, which refuses anything
beyond N a second with 429. The rate is measured over the first ``--seconds`` of real time from
the first delivery; the run then waits for the whole audience to be delivered and checks every
recipient got it exactly once. Ratio = measured ÷ N (aim ≥ 95 %). At N=1000/s 100,000
recipients drain in under two minutes; at N=30/s they would take 56 minutes, so that rate is run
time-scaled, on 3,000 recipients (``--recipients 3000 --rates 30``): the rate over a minute is the
rate, and the enqueue half is measured at full size by ``enqueue``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
import tracemalloc

from sqlalchemy import insert

from bench._common import scratch_database, table
from bench.outbox import Fill, one_run, report
from bot.outbox.broadcasts import Broadcasts
from bot.storage.db import BotDatabase
from bot.storage.schema import Chat

LOCALES = ("zh_Hans", "zh_Hans", "zh_Hans", "zh_Hant", "en")


async def fill_chats(db: BotDatabase, people: int, batch: int = 20_000) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for start in range(0, people, batch):
        async with db.session() as session:
            await session.execute(insert(Chat), [
                {"address": str(10_000_000 + n), "channel": "telegram",
                 "locale": LOCALES[n % len(LOCALES)], "locale_chosen": False,
                 "notices": n % 50 != 0, "created_at": now, "last_seen_at": now}
                for n in range(start, min(people, start + batch))
            ])


async def enqueue_once(kind: str, people: int) -> tuple[float, float, int]:
    """Seconds, peak heap (MiB) and rows for enqueueing one announcement to ``people``."""
    async with scratch_database(kind, "gp_bench_broadcast") as url:
        db = BotDatabase(url)
        await db.upgrade()
        try:
            await fill_chats(db, people)
            broadcasts = Broadcasts(db)
            broadcast_id = await broadcasts.create(("telegram", "1"), "bench", None, "all")
            tracemalloc.start()
            started = time.perf_counter()
            await broadcasts.enqueue_all(broadcast_id)
            seconds = time.perf_counter() - started
            _current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            progress = await broadcasts.progress(broadcast_id)
            assert progress is not None
            return seconds, peak / 2**20, progress.total
        finally:
            await db.dispose()


async def enqueue_bench(kind: str, sizes: list[int]) -> str:
    rows = []
    baseline: float | None = None
    for people in sizes:
        seconds, peak, total = await enqueue_once(kind, people)
        baseline = baseline or peak
        rows.append((f"{people:,} people ({total:,} in the audience)",
                     f"{seconds:.1f} s = {total / seconds:,.0f} recipients/s; heap peak "
                     f"{peak:.2f} MiB = {peak / baseline:.2f}x the smallest run"))
        print(rows[-1], file=sys.stderr, flush=True)
    return table(rows, f"enqueueing one announcement ({kind})")


def broadcast_fill(recipients: int) -> Fill:
    async def fill(url: str, _rows: int) -> None:
        db = BotDatabase(url)
        await db.upgrade()
        try:
            await fill_chats(db, recipients)
            broadcasts = Broadcasts(db)
            broadcast_id = await broadcasts.create(("telegram", "1"), "bench news", None, "all")
            await broadcasts.enqueue_all(broadcast_id)
        finally:
            await db.dispose()

    return fill


async def drain_bench(kind: str, recipients: int, rates: list[int], seconds: float) -> str:
    results = []
    audience = sum(1 for n in range(recipients) if n % 50 != 0)
    for limit in rates:
        result = await one_run(
            kind, limit, seconds, "own", rows=audience,
            fill_rows=broadcast_fill(recipients),
            key=lambda s: (s.chat_id, s.text),
        )
        print(report([result], kind).splitlines()[-1], file=sys.stderr, flush=True)
        results.append(result)
    return report(results, f"{kind}, one announcement to {audience:,} recipients")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["enqueue", "drain"])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")],
                   default=[100_000, 1_000_000])
    p.add_argument("--recipients", type=int, default=100_000)
    p.add_argument("--rates", type=lambda v: [int(x) for x in v.split(",")], default=[30, 1000])
    p.add_argument("--seconds", type=float, default=60.0)
    return p.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    if args.what == "enqueue":
        print(await enqueue_bench(args.db, args.sizes))
    else:
        print(await drain_bench(args.db, args.recipients, args.rates, args.seconds))


if __name__ == "__main__":
    asyncio.run(main(parse()))
