"""Updates per second through the whole bot application, and QR rendering beside qrcode's own.

    .venv/bin/python -m bench.bot_throughput                      # /balance and /qr, polling
    .venv/bin/python -m bench.bot_throughput --drive queue        # skip getUpdates
    .venv/bin/python -m bench.bot_throughput --updates 5000 --people 500 --only balance

The application is the production one (``build_application``: the profile middleware, the
handlers, python-telegram-bot with its rate limiter, raised so it is not the bottleneck), talking
over HTTP to the fake Bot API server of the tests on 127.0.0.1 (no rate limit), with the ledger
in-process on SQLite and the bot's database on SQLite. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import qrcode
from telegram import Update

from bench._common import percentile, table
from bot.media import qr

try:  # the console channel exists from issue 9 on; the same script measures the code before it
    from bot.channels.console.channel import ConsoleChannel
    from bot.channels.console.screen import Screen
    from bot.chat.events import Person as ChatPerson
    from bot.features import neutral_router

    CONSOLE_AVAILABLE = True
except ImportError:  # pragma: no cover - only on code from before issue 9
    CONSOLE_AVAILABLE = False
from bot.channels.telegram.context import App
from tests.bot_harness import Harness, running_bot
from tests.fake_telegram import Person


def tg(chat_id: int) -> tuple[str, str]:
    """A Telegram chat's key in the bot's tables."""
    return "telegram", str(chat_id)

FIRST_CHAT = 50_000
EXPECTED = {"/balance": "sendMessage", "/qr": "sendPhoto"}


@dataclass
class Timed:
    """How long each update spent in the application (``process_update``), in seconds."""

    latencies: list[float] = field(default_factory=list)
    on: bool = False


def time_updates(app: App, timed: Timed) -> None:
    """Time ``process_update``: middleware, handler and its Bot API calls, error handler.

    It starts once python-telegram-bot lets the update in (at most ``concurrent_updates`` at a
    time), so it is the handler's time, not the time spent queued behind a burst.
    """
    inner = app.process_update

    async def process_update(update: object) -> None:
        t0 = time.perf_counter()
        try:
            await inner(update)
        finally:
            if timed.on:
                timed.latencies.append(time.perf_counter() - t0)

    app.process_update = process_update  # type: ignore[method-assign]


@dataclass
class Result:
    label: str
    updates: int
    seconds: float
    cpu_seconds: float  # this process's CPU time over the window: bot, fake server and ledger
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.updates / self.seconds

    def ms(self, p: float) -> str:
        return f"{percentile(sorted(x * 1000 for x in self.latencies), p):.1f} ms"

    def rows(self) -> list[tuple[str, str]]:
        cpu_ms = self.cpu_seconds / self.updates * 1000
        done = f"{self.rate:,.0f} ({self.updates} in {self.seconds:.1f} s)"
        return [
            (f"{self.label} updates/s", done),
            (f"{self.label} CPU per update", f"{cpu_ms:.2f} ms"),
            (f"{self.label} handler p50 / p99", f"{self.ms(50)} / {self.ms(99)}"),
        ]


async def setup_people(h: Harness, count: int, purchases: int) -> list[Person]:
    """Members with a few purchases and a voucher grant each, so /balance has lines to show."""
    people = [h.person(FIRST_CHAT + n, f"会员{n}", "zh-hans") for n in range(count)]
    for chunk in range(0, count, 100):
        batch = people[chunk : chunk + 100]
        target = len(h.fake.sent) + len(batch)
        for person in batch:
            person.says("/start")
        await h.fake.wait_for(lambda sent, target=target: len(sent) >= target, 120)
    shop = h.ledger_as("system")  # members by id: the system's path (issue 11)
    for person in people:
        profile = await h.services.chats.get(tg(person.id))
        assert profile is not None and profile.member_id is not None
        for n in range(purchases):
            await shop.record_purchase(
                h.shop_id, profile.member_id, 2_000 + 500 * n, f"bench-{person.id}-{n}"
            )
    await h.ledger_as("admin").release()
    await h.settle()  # the points and voucher notices these caused go out before measuring
    return people


def make_updates(people: list[Person], command: str, count: int) -> list[dict[str, Any]]:
    """``count`` updates of ``command``, round robin over ``people``, as Telegram sends them."""
    out = []
    for n in range(count):
        person = people[n % len(people)]
        message = person._message(
            text=command, entities=[{"type": "bot_command", "offset": 0, "length": len(command)}]
        )
        out.append({"update_id": 1_000_000 + n, "message": message})
    return out


async def run(
    h: Harness,
    timed: Timed,
    drive: str,
    command: str,
    updates: list[dict[str, Any]],
    rate: float | None = None,
) -> Result:
    """Deliver the updates — all at once, or ``rate`` a second — and wait until the bot has
    answered each one."""
    fake = h.fake
    start_count = len(fake.sent)
    timed.latencies.clear()
    timed.on = True
    t0, cpu0 = time.perf_counter(), time.process_time()
    for n, update in enumerate(updates):
        if rate is not None:
            # Pacing the arrivals is the schedule being measured, not a wait for an outcome.
            await asyncio.sleep(max(0.0, t0 + n / rate - time.perf_counter()))
        if drive == "poll":
            fake.push({k: v for k, v in update.items() if k != "update_id"})
        else:
            await h.app.update_queue.put(Update.de_json(update, h.app.bot))
    await fake.wait_for(lambda sent: len(sent) >= start_count + len(updates), within=600)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    timed.on = False
    wrong = [f"{s.method}: {s.text[:80]}" for s in fake.sent[start_count:]
             if s.method != EXPECTED[command]]
    if wrong:
        raise SystemExit(f"{command}: the bot answered {wrong[:3]}, not {EXPECTED[command]}")
    label = command if rate is None else f"{command} at {rate:,.0f}/s"
    return Result(label, len(updates), seconds, cpu, list(timed.latencies))


async def ledger_alone(
    h: Harness, people: list[Person], command: str, count: int, concurrency: int = 64
) -> tuple[str, str]:
    """The ledger call each command makes, on its own: the ceiling for the whole update."""
    ledger = h.services.ledger
    members = []
    for person in people:
        profile = await h.services.chats.get(tg(person.id))
        assert profile is not None and profile.member_id is not None
        members.append(profile.member_id)
    call: Callable[[int], Awaitable[object]] = (
        (lambda m: ledger.balance(m, limit=5)) if command == "/balance" else ledger.issue_code
    )
    t0 = time.perf_counter()
    for start in range(0, count, concurrency):
        await asyncio.gather(*(call(members[(start + i) % len(members)])
                               for i in range(min(concurrency, count - start))))
    rate = count / (time.perf_counter() - t0)
    name = "balance" if command == "/balance" else "issue_code"
    return f"{command} ledger.{name} alone", f"{rate:,.0f}/s ({concurrency} at a time)"


async def console_run(
    h: Harness, people: list[Person], command: str, count: int, tmp: Path, concurrency: int = 256
) -> list[tuple[str, str]]:
    """The same command through the console channel (``bot.channels.console``): the same router,
    features and ledger, replies printed into memory instead of Bot API calls, so the figure
    is the chat core's cost without python-telegram-bot and HTTP."""
    router = neutral_router()
    screen = Screen(io.StringIO(), tmp / "pictures")
    channels = [
        ConsoleChannel(
            h.services, router, screen, ChatPerson("console", str(p.id), None, "zh-hans")
        )
        for p in people
    ]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for start in range(0, count, concurrency):
        await asyncio.gather(
            *(
                channels[(start + i) % len(channels)].handle(
                    channels[(start + i) % len(channels)].text(command)
                )
                for i in range(min(concurrency, count - start))
            )
        )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return [
        (f"{command} console updates/s", f"{count / seconds:,.0f} ({count} in {seconds:.1f} s)"),
        (f"{command} console CPU per update", f"{cpu / count * 1000:.2f} ms"),
    ]


def time_per_call(fn: Callable[[], object], repeat: int) -> float:
    """Best of five rounds, ms per call: the steady state, not the first-call warm-up."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        rounds.append((time.perf_counter() - t0) / repeat * 1000)
    return min(rounds)


def qrcode_default_png(data: str) -> bytes:
    """qrcode's documented path: ``qrcode.make`` (automatic mask, PIL image), saved as PNG."""
    out = io.BytesIO()
    qrcode.make(data).save(out)
    return out.getvalue()


def qr_rows(repeat: int) -> list[tuple[str, str]]:
    link = "https://t.me/GreenPointsBot?start=c_Qk9XbWm3TzR1eFhpa2c3"
    ours = time_per_call(lambda: qr.png(link), repeat)
    baseline = time_per_call(lambda: qrcode_default_png(link), max(1, repeat // 4))
    return [
        ("QR bot.media.qr.png", f"{ours:.2f} ms/image"),
        ("QR qrcode.make baseline", f"{baseline:.2f} ms/image"),
        ("QR ratio (baseline / ours)", f"{baseline / ours:.1f}x"),
    ]


async def main(args: argparse.Namespace) -> None:
    commands = {"balance": "/balance", "qr": "/qr"}
    chosen = [commands[args.only]] if args.only else list(commands.values())
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="gp-bench-") as tmp:
        async with running_bot("sqlite", Path(tmp)) as h:
            timed = Timed()
            time_updates(h.app, timed)
            t0 = time.perf_counter()
            people = await setup_people(h, args.people, args.purchases)
            print(f"set up {len(people)} members in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
            for command in chosen:
                warm = make_updates(people, command, min(args.updates, 300))
                await run(h, timed, args.drive, command, warm)
                burst = await run(h, timed, args.drive, command,
                                  make_updates(people, command, args.updates))
                paced = await run(h, timed, args.drive, command,
                                  make_updates(people, command, args.updates // 2),
                                  rate=max(1.0, burst.rate * args.paced))
                rows += burst.rows() + paced.rows()[2:]
                rows.append(await ledger_alone(h, people, command, args.updates))
                if CONSOLE_AVAILABLE:
                    rows += await console_run(h, people, command, args.updates, Path(tmp))
    rows += qr_rows(args.qr_repeat)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    title = (f"bot throughput — drive={args.drive}, ledger in-process on SQLite, "
             f"{args.people} people, {args.updates} updates per command, load average {load}")
    print(table(rows, title))
    print("aims: /balance ≥ 300 updates/s; QR ≤ 3 ms/image")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--drive", choices=["poll", "queue"], default="poll",
                   help="poll: updates go into the fake server's getUpdates queue and the bot "
                        "long-polls them over HTTP, as in production (default); queue: "
                        "straight into app.update_queue, skipping getUpdates")
    p.add_argument("--updates", type=int, default=3000, help="measured updates per command")
    p.add_argument("--people", type=int, default=300, help="distinct chats sending them")
    p.add_argument("--purchases", type=int, default=3, help="purchases per member in setup")
    p.add_argument("--paced", type=float, default=0.5,
                   help="the latency run offers this fraction of the burst rate (default 0.5)")
    p.add_argument("--only", choices=["balance", "qr"], help="one command only")
    p.add_argument("--qr-repeat", type=int, default=400, help="QR images per timing round")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
