"""Outbox drain rate against a fake Bot API that enforces N messages/s, for N = 30 and 1,000.

    .venv/bin/python -m bench.outbox                       # N = 30 and 1000, 20 s each, SQLite
    .venv/bin/python -m bench.outbox --db postgres --rates 1000 --seconds 20
    .venv/bin/python -m bench.outbox --limiter both       # also PTB's AIORateLimiter instead

The fake server (tests/fake_telegram.py) runs in this process and refuses, with 429 and
retry_after=1, any send beyond N in a strict sliding second. The sender runs as in production:
its own process (tests/sender_process.py), its own database (a scratch SQLite file or PostgreSQL
database), rows pre-filled so it never runs dry. Measured in real time (not scaled): accepted
sends in the ``--seconds`` window that starts at the first accepted send; then the rest is
drained and every row is checked to have arrived exactly once. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from bench._common import scratch_database, table
from bot.storage import outbox
from bot.storage.db import BotDatabase
from bot.storage.outbox import Outgoing
from bot.storage.schema import OutboxMessage
from tests.fake_telegram import FakeTelegram, Sent
from tests.sender_process import spawn


def tg(chat_id: int) -> tuple[str, str]:
    """A Telegram chat's key in the bot's tables."""
    return "telegram", str(chat_id)


@dataclass
class Result:
    limit: int
    limiter: str
    seconds: float
    in_window: int
    rows: int
    delivered: int
    lost: int
    duplicates: int
    refused_429: int
    states: dict[str, int]
    mean_request_ms: float

    @property
    def rate(self) -> float:
        return self.in_window / self.seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.limit


async def fill(url: str, rows: int) -> None:
    db = BotDatabase(url)
    await db.upgrade()
    try:
        for start in range(0, rows, 5_000):
            async with db.session() as session:
                await outbox.enqueue(session, [
                    Outgoing(*tg(1_000_000 + n), "sendMessage", {"text": f"bench {n}"}, "notice",
                             dedupe_key=f"bench:{n}")
                    for n in range(start, min(rows, start + 5_000))
                ])
    finally:
        await db.dispose()


async def final_states(url: str) -> dict[str, int]:
    db = BotDatabase(url)
    try:
        async with db.session() as session:
            found = await session.execute(
                select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
            )
            return {state: int(n) for state, n in found.all()}
    finally:
        await db.dispose()


Fill = Callable[[str, int], Awaitable[None]]


async def one_run(
    kind: str, limit: int, seconds: float, limiter: str, *, rows: int | None = None,
    fill_rows: Fill = fill, key: Callable[[Sent], object] = lambda s: s.text,
) -> Result:
    """Drain ``rows`` rows (by default just enough never to run dry in the window) put in by
    ``fill_rows``; ``key`` tells two deliveries of the same row from two rows."""
    fake = FakeTelegram()
    fake.misbehave.rate_limit = limit
    fake.misbehave.retry_after = 1
    await fake.start()
    rows = rows or math.ceil(limit * seconds * 1.1) + limit
    try:
        async with scratch_database(kind, "gp_bench_outbox") as url:
            await fill_rows(url, rows)
            options = ["--rate-overall", str(limit), "--rate-per-chat", "1"]
            if limiter == "ptb":
                options.append("--ptb-limiter")
            process = await spawn(url, fake.url, *options)
            try:
                await fake.wait_for(lambda sent: len(sent) >= 1, within=60)
                start = fake.sent[0].at
                await asyncio.sleep(max(0.0, start + seconds + 0.05 - time.monotonic()))
                in_window = sum(1 for s in fake.sent if s.at < start + seconds)
                out, err = await asyncio.wait_for(process.communicate(), rows / limit * 3 + 120)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            if process.returncode != 0:
                raise RuntimeError(f"the sender failed: {err.decode()[-2000:]}")
            stats = json.loads(out.decode().strip().splitlines()[-1])
            states = await final_states(url)
    finally:
        await fake.close()
    counts = Counter(key(s) for s in fake.sent)
    return Result(
        limit=limit,
        limiter=limiter,
        seconds=seconds,
        in_window=in_window,
        rows=rows,
        delivered=len(fake.sent),
        lost=rows - len(counts),
        duplicates=len(fake.sent) - len(counts),
        refused_429=sum(1 for a in fake.attempts if a.status == 429),
        states=states,
        mean_request_ms=1000 * stats["request_seconds"] / max(1, stats["requests"]),
    )


def report(results: list[Result], kind: str) -> str:
    lines = []
    for r in results:
        lines += [
            (f"N={r.limit}/s, {r.limiter} limiter",
             f"{r.rate:,.1f} sent/s over {r.seconds:.0f} s = {r.ratio:.1%} of N; "
             f"lost {r.lost} of {r.rows:,}; duplicates {r.duplicates}; 429s {r.refused_429}; "
             f"mean request {r.mean_request_ms:.1f} ms; rows {r.states}"),
        ]
    return table(lines, f"outbox drain rate vs a fake Bot API enforcing N/s ({kind})")


async def main(args: argparse.Namespace) -> None:
    limiters = ["own", "ptb"] if args.limiter == "both" else [args.limiter]
    results = []
    for limit in args.rates:
        for limiter in limiters:
            result = await one_run(args.db, limit, args.seconds, limiter)
            print(report([result], args.db).splitlines()[-1], file=sys.stderr, flush=True)
            results.append(result)
    print(report(results, args.db))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--rates", type=lambda v: [int(x) for x in v.split(",")], default=[30, 1000],
                   help="limits N to run against, comma-separated (default 30,1000)")
    p.add_argument("--seconds", type=float, default=20.0, help="measuring window (default 20)")
    p.add_argument("--limiter", choices=["own", "ptb", "both"], default="own",
                   help="the sender's own window (production), PTB's AIORateLimiter, or both")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
