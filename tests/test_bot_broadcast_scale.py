"""An announcement to 10,000 people against a rate-limited Bot API that refuses some chats
(403), with the sender killed for real mid-way and restarted: everyone is accounted for,
and only messages in flight at the kill can arrive twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from bot.outbox.broadcasts import Broadcasts
from bot.storage import outbox
from bot.storage.db import BotDatabase
from bot.storage.schema import Chat, OutboxMessage
from tests.conftest import DATABASES
from tests.databases import fresh_database
from tests.fake_telegram import FakeTelegram
from tests.sender_process import spawn

PEOPLE = 10_000
RATE = 1_000  # what the fake Bot API enforces, and what the sender is told
TEXT = "绿色周：自带杯子，积分翻倍！"




@pytest.mark.slow
@pytest.mark.parametrize("kind", DATABASES)
async def test_ten_thousand_recipients_blocked_chats_rate_limit_and_a_killed_sender(
    kind: str, tmp_path: Path
) -> None:
    fake = FakeTelegram()
    fake.misbehave.rate_limit = RATE
    chats = [1_000_000 + n for n in range(PEOPLE)]
    blocked = set(chats[::37])
    fake.misbehave.blocked |= blocked
    await fake.start()
    try:
        async with fresh_database(kind, tmp_path) as url:
            db = BotDatabase(url)
            await db.upgrade()
            try:
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                async with db.session() as session:
                    await session.execute(insert(Chat), [
                        {"address": str(c), "channel": "telegram", "locale": "zh_Hans",
                         "locale_chosen": False, "notices": True, "created_at": now,
                         "last_seen_at": now}
                        for c in chats
                    ])
                broadcasts = Broadcasts(db)
                broadcast_id = await broadcasts.create(("telegram", "1"), TEXT, None, "all")
                await broadcasts.enqueue_all(broadcast_id)

                first = await spawn(url, fake.url, "--rate-overall", str(RATE))
                await fake.wait_for(lambda sent: len(sent) >= PEOPLE // 3, within=120)
                first.send_signal(signal.SIGKILL)
                await first.wait()
                async with db.session() as session:
                    in_flight = {int(address) for address in (await session.scalars(
                        select(OutboxMessage.address).where(OutboxMessage.state == outbox.SENDING)
                    )).all()}
                delivered_at_kill = len(fake.sent)

                second = await spawn(url, fake.url, "--rate-overall", str(RATE))
                out, err = await asyncio.wait_for(second.communicate(), 300)
                assert second.returncode == 0, err.decode()[-2000:]
                stats = json.loads(out.decode().strip().splitlines()[-1])

                received = Counter(s.chat_id for s in fake.sent if s.text == TEXT)
                assert set(received) == set(chats) - blocked  # nobody missed
                twice = {chat for chat, n in received.items() if n > 1}
                assert max(received.values()) <= 2 and twice <= in_flight
                report = await broadcasts.finish_if_done(broadcast_id)
                assert report is not None and report.state == "done"
                assert (report.total, report.blocked, report.failed, report.skipped) == (
                    PEOPLE, len(blocked), 0, 0)
                assert report.sent + report.blocked + report.failed == report.total
                refused_for_rate = sum(1 for _m, status in fake.rejected if status == 429)
                print(
                    f"\nbroadcast scale ({kind}): {PEOPLE} recipients, {len(blocked)} blocked, "
                    f"limit {RATE}/s; killed after {delivered_at_kill} deliveries with "
                    f"{len(in_flight)} rows in flight; {len(twice)} got it twice (all in flight);"
                    f" 429s: {refused_for_rate}; restart sent {stats.get('sent')}"
                )
            finally:
                await db.dispose()
    finally:
        await fake.close()
