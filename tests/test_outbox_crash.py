"""A sender killed for real (SIGKILL, in its own process) mid-drain, then restarted: every row
is delivered, and the only rows delivered twice are rows that were in flight at the kill —
at most once more each.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.storage import outbox
from bot.storage.db import BotDatabase
from bot.storage.outbox import Outgoing
from bot.storage.schema import OutboxMessage
from tests.conftest import DATABASES
from tests.databases import fresh_database
from tests.fake_telegram import FakeTelegram
from tests.sender_process import spawn


def tg(chat_id: int) -> tuple[str, str]:
    """A Telegram chat's key in the bot's tables."""
    return "telegram", str(chat_id)

ROWS = 3_000




async def states(db: BotDatabase) -> dict[int, str]:
    async with db.session() as session:
        rows = await session.execute(select(OutboxMessage.id, OutboxMessage.state))
        return {row_id: state for row_id, state in rows.all()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", DATABASES)
async def test_a_killed_sender_loses_nothing_and_repeats_only_what_was_in_flight(
    kind: str, tmp_path: Path
) -> None:
    fake = FakeTelegram()
    await fake.start()
    try:
        async with fresh_database(kind, tmp_path) as url:
            db = BotDatabase(url)
            await db.upgrade()
            try:
                async with db.session() as session:
                    await outbox.enqueue(session, [
                        Outgoing(*tg(100_000 + n), "sendMessage", {"text": f"row {n}"}, "notice",
                                 dedupe_key=f"crash:{n}")
                        for n in range(ROWS)
                    ])
                ids = await states(db)

                first = await spawn(url, fake.url)
                await fake.wait_for(lambda sent: len(sent) >= ROWS // 3, within=120)
                first.send_signal(signal.SIGKILL)
                await first.wait()
                assert first.returncode == -signal.SIGKILL
                at_kill = await states(db)
                in_flight = {i for i, state in at_kill.items() if state == outbox.SENDING}
                recorded = {i for i, state in at_kill.items() if state == outbox.SENT}
                delivered_at_kill = len(fake.sent)

                second = await spawn(url, fake.url)
                out, err = await asyncio.wait_for(second.communicate(), 180)
                assert second.returncode == 0, err.decode()
                stats = json.loads(out.decode().strip().splitlines()[-1])
                assert stats["recovered"] == len(in_flight)

                counts = Counter(s.text for s in fake.sent)
                assert set(counts) == {f"row {n}" for n in range(ROWS)}  # nothing lost
                assert max(counts.values()) <= 2
                id_of = {f"row {n}": row_id for n, row_id in enumerate(sorted(ids))}
                twice = {id_of[text] for text, n in counts.items() if n == 2}
                assert twice <= in_flight  # repeats only among rows in flight at the kill
                assert not twice & recorded
                assert set((await states(db)).values()) == {outbox.SENT}
                print(
                    f"\ncrash test ({kind}): {ROWS} rows; killed after {delivered_at_kill} "
                    f"deliveries, {len(recorded)} recorded sent, {len(in_flight)} in flight "
                    f"(claimed, state sending); after the restart {len(fake.sent)} deliveries: "
                    f"{len(twice)} duplicates, all among those in flight; 0 lost"
                )
            finally:
                await db.dispose()
    finally:
        await fake.close()
