"""The WeChat channel's shared state under concurrency, on both databases: the service-window
count holds however many senders race for it, and old deliveries are purged."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bot.channels.wechat import store
from bot.storage.db import BotDatabase
from bot.storage.schema import WeChatDelivery
from tests.wechat_harness import bot_database_url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BotDatabase]:
    async with bot_database_url(request.param, tmp_path) as url:
        database = BotDatabase(url)
        await database.upgrade()
        yield database
        await database.dispose()


async def test_racing_senders_never_exceed_a_window(db: BotDatabase) -> None:
    await store.open_window(db, "o_x", by_message=True)  # 5 sends in 48 h
    await store.open_window(db, "o_x", by_message=False)  # and 3 in a minute
    granted = await asyncio.gather(*(store.take_send(db, "o_x") for _ in range(20)))
    assert sum(granted) == 8


async def test_a_new_message_reopens_the_window_count(db: BotDatabase) -> None:
    await store.open_window(db, "o_y", by_message=True)
    assert [await store.take_send(db, "o_y") for _ in range(6)] == [True] * 5 + [False]
    await store.open_window(db, "o_y", by_message=True)
    assert await store.take_send(db, "o_y")


async def test_the_first_claim_wins_and_later_ones_see_its_reply(db: BotDatabase) -> None:
    claims = await asyncio.gather(*(store.claim_delivery(db, "k" * 64, "o_z") for _ in range(6)))
    assert sum(c.first for c in claims) == 1
    assert await store.finish_delivery(db, "k" * 64, "<xml>r</xml>") is False  # retried meanwhile
    fresh = await store.claim_delivery(db, "j" * 64, "o_z")
    assert fresh.first
    assert await store.finish_delivery(db, "j" * 64, "<xml>r</xml>") is True
    assert await store.claim_delivery(db, "j" * 64, "o_z") == store.Claim(False, "<xml>r</xml>")


async def test_old_deliveries_are_purged(db: BotDatabase) -> None:
    for key in ("a", "b"):
        await store.claim_delivery(db, key * 64, "o_p")
    async with db.session() as session:
        await session.execute(
            update(WeChatDelivery)
            .where(WeChatDelivery.key == "a" * 64)
            .values(created_at=WeChatDelivery.created_at - dt.timedelta(days=2))
        )
    assert await store.purge_deliveries(db, dt.timedelta(days=1)) == 1
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(WeChatDelivery)) == 1
