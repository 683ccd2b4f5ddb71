"""One outbox sender in a process of its own, as the crash test and the outbox bench need it:
something that can be killed for real (SIGKILL) and restarted on the same database.

    python -m tests.sender_process --database-url URL --api-url URL [--rate-overall N] …

It sends broadcasts as the bot does (content from the broadcasts table, outcomes counted).
It drains everything due, then prints its counters as one JSON line and exits (with
``--forever`` it keeps running until killed). With ``--ptb-limiter`` the overall rate is left
to python-telegram-bot's ``AIORateLimiter``, configured as ``bot.channels.telegram.app``
configures it, instead of the sender's own window — the comparison bench/outbox.py prints.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from telegram import Bot
from telegram.ext import AIORateLimiter, ExtBot

from bot.channels.telegram.http import AiohttpRequest
from bot.outbox.broadcasts import Broadcasts, record_outcomes
from bot.outbox.sender import OutboxSender, SenderTuning
from bot.storage.chats import ChatStore
from bot.storage.db import BotDatabase

TOKEN = "123456:SENDER-PROCESS"
ROOT = Path(__file__).resolve().parent.parent


async def spawn(database_url: str, api_url: str, *options: str) -> asyncio.subprocess.Process:
    """This module in a process of its own, its counters on the returned process's stdout."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.sender_process",
        "--database-url", database_url, "--api-url", api_url, *options,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.sender_process")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--api-url", required=True, help="the Bot API server, without /bot")
    parser.add_argument("--rate-overall", type=float, default=100_000.0)
    parser.add_argument("--rate-per-chat", type=float, default=1_000.0)
    parser.add_argument("--ptb-limiter", action="store_true")
    parser.add_argument("--forever", action="store_true")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, object]:
    db = BotDatabase(args.database_url)
    request = AiohttpRequest(connections=64)
    await request.initialize()
    base_url = f"{args.api_url}/bot"
    rate_overall = args.rate_overall
    bot: Bot
    if args.ptb_limiter:
        limiter = AIORateLimiter(
            overall_max_rate=args.rate_overall, overall_time_period=1, max_retries=3
        )
        bot = ExtBot(TOKEN, base_url=base_url, request=request, get_updates_request=request,
                     rate_limiter=limiter)
        rate_overall = 1e9  # the limiter alone decides
    else:
        bot = Bot(TOKEN, base_url=base_url, request=request, get_updates_request=request)
    sender = OutboxSender(db, ChatStore(db), bot, rate_overall=rate_overall,
                          rate_per_chat=args.rate_per_chat, tuning=SenderTuning(),
                          resolvers={"broadcast": Broadcasts(db).resolve},
                          on_outcomes=record_outcomes)
    task = asyncio.create_task(sender.run())
    try:
        if args.forever:
            await task
        await sender.settled()
    finally:
        await sender.stop()
        await task
        await request.shutdown()
        await db.dispose()
    return dataclasses.asdict(sender.stats)


def main(argv: Sequence[str] | None = None) -> int:
    stats = asyncio.run(run(parse(sys.argv[1:] if argv is None else argv)))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
