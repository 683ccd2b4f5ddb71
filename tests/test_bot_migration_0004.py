"""Migration 0004_neutral_outbox on a bot database built by 0003 with Bot-API-shaped rows: an
unsent Telegram notice becomes a neutral ``written`` notice that says exactly its text (and the
Telegram sender sends that text), sent rows and WeChat's neutral rows stay as they were,
broadcasts move behind receipts, expiry warnings and digests (priority 3)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, text
from telegram import Bot

from bot.channels.telegram.http import AiohttpRequest
from bot.chat.i18n import translator
from bot.outbox import notices
from bot.outbox.sender import OutboxSender, SenderTuning
from bot.storage.chats import ChatStore
from bot.storage.db import BotDatabase, alembic_config
from tests.conftest import DATABASES
from tests.databases import fresh_database
from tests.fake_telegram import FakeTelegram

AT = dt.datetime(2026, 11, 1, 8, 0)
PENDING_TEXT = "You earned 1,200 points at Shop on a purchase of CN¥88.50."
TOKEN = "123456:MIGRATE-0004"


def _to_0003_with_rows(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "0003_wechat")
    connection.execute(
        text("INSERT INTO chats (channel, address, member_id, locale, locale_chosen, notices,"
             " created_at, last_seen_at) VALUES ('telegram', '1001', 41, 'en', true, true,"
             " :t, :t)"),
        {"t": AT},
    )
    rows = [
        # (address, dedupe, kind, priority, method, payload, state)
        ("1001", "event:9", "notice", 0, "sendMessage", {"text": PENDING_TEXT}, "pending"),
        ("1001", "event:8", "notice", 0, "sendMessage", {"text": "already sent"}, "sent"),
        ("1001", "bc:1:telegram:1001", "broadcast", 1, "sendMessage", {}, "pending"),
    ]
    for address, key, kind, priority, method, payload, state in rows:
        connection.execute(
            text("INSERT INTO outbox (channel, address, dedupe_key, kind, priority, method,"
                 " payload, state, attempts, not_before, created_at) VALUES ('telegram', :a,"
                 " :k, :kind, :p, :m, :pl, :s, 0, :t, :t)"),
            {"a": address, "k": key, "kind": kind, "p": priority, "m": method,
             "pl": json.dumps(payload), "s": state, "t": AT},
        )
    wechat = {"kind": "points.earned", "fields": {"points": 5}}
    connection.execute(
        text("INSERT INTO outbox (channel, address, dedupe_key, kind, priority, method, payload,"
             " state, attempts, not_before, created_at) VALUES ('wechat', 'o_1', 'event:10',"
             " 'notice', 0, 'notice', :pl, 'pending', 0, :t, :t)"),
        {"pl": json.dumps(wechat), "t": AT},
    )


def _rows(connection: Connection) -> list[tuple[object, ...]]:
    found = connection.execute(
        text("SELECT dedupe_key, priority, method, payload, state FROM outbox ORDER BY id")
    ).all()
    return [
        (key, priority, method, json.loads(p) if isinstance(p, str) else p, state)
        for key, priority, method, p, state in found
    ]


@pytest.mark.parametrize("kind", DATABASES)
async def test_unsent_bot_api_rows_become_neutral_notices_that_say_the_same(
    kind: str, tmp_path: Path
) -> None:
    fake = FakeTelegram()
    await fake.start()
    try:
        async with fresh_database(kind, tmp_path) as url:
            db = BotDatabase(url)
            try:
                async with db.engine.begin() as conn:
                    await conn.run_sync(_to_0003_with_rows)
                await db.upgrade()
                async with db.engine.connect() as conn:
                    rows = await conn.run_sync(_rows)
                written = {"kind": "written", "fields": {"text": PENDING_TEXT}}
                assert rows == [
                    ("event:9", 0, "notice", written, "pending"),
                    ("event:8", 0, "sendMessage", {"text": "already sent"}, "sent"),
                    ("bc:1:telegram:1001", 3, "sendMessage", {}, "pending"),
                    ("event:10", 0, "notice", {"kind": "points.earned",
                                              "fields": {"points": 5}}, "pending"),
                ]
                notice = notices.from_payload(written)
                assert notices.notice_text(notice, translator("zh_Hans")) == PENDING_TEXT

                # The Telegram sender sends the carried row's text as it is (the broadcast row
                # has no broadcast behind it any more: skipped, not sent).
                http = AiohttpRequest()
                await http.initialize()
                bot = Bot(TOKEN, base_url=f"{fake.url}/bot", request=http,
                          get_updates_request=http)
                sender = OutboxSender(
                    db, ChatStore(db), bot, rate_overall=1000, rate_per_chat=1000,
                    tuning=SenderTuning(flush_every=0.02, idle_poll=0.05, lock_retry=0.05),
                    resolvers={"broadcast": _no_content},
                )
                try:
                    task = asyncio.create_task(sender.run())
                    await sender.settled()
                    await sender.stop()
                    await task
                finally:
                    await http.shutdown()
                assert [s.text for s in fake.to(1001)] == [PENDING_TEXT]
            finally:
                await db.dispose()
    finally:
        await fake.close()


async def _no_content(rows: object) -> dict[int, None]:
    return {}
