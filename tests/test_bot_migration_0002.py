"""Migration 0002_channel_address on a bot database built by the 0001 schema: Telegram's rows
become ('telegram', str(chat_id)) in chats, flows, outbox and broadcasts, nothing lost."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, text

from bot.storage.db import BotDatabase, alembic_config
from tests.conftest import DATABASES
from tests.databases import fresh_database

AT = dt.datetime(2026, 11, 1, 8, 0)
BIG = 7_123_456_789  # a Telegram id beyond 32 bits


def _to_0001_with_rows(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "0001")
    for chat_id, member in ((BIG, 41), (1001, None)):
        connection.execute(
            text("INSERT INTO chats (chat_id, channel, member_id, locale, locale_chosen,"
                 " notices, created_at, last_seen_at)"
                 " VALUES (:c, 'telegram', :m, 'en', true, true, :t, :t)"),
            {"c": chat_id, "m": member, "t": AT},
        )
    connection.execute(
        text("INSERT INTO flows (chat_id, kind, data, expires_at) VALUES (:c, 'bill', :d, :t)"),
        {"c": BIG, "d": '{"code": "1234"}', "t": AT},
    )
    connection.execute(
        text("INSERT INTO outbox (chat_id, dedupe_key, kind, priority, method, payload, state,"
             " attempts, not_before, created_at) VALUES (:c, 'event:9', 'notice', 0,"
             " 'sendMessage', :p, 'pending', 0, :t, :t)"),
        {"c": 1001, "p": '{"text": "hi"}', "t": AT},
    )
    connection.execute(
        text("INSERT INTO broadcasts (admin_chat_id, text, audience, state, total, sent, blocked,"
             " failed, skipped, enqueue_cursor, created_at) VALUES (:c, 'hello', 'all', 'sending',"
             " 2, 1, 0, 0, 0, :c, :t)"),
        {"c": BIG, "t": AT},
    )


def _rows(connection: Connection) -> dict[str, list[tuple[object, ...]]]:
    def fetch(sql: str) -> list[tuple[object, ...]]:
        return [tuple(row) for row in connection.execute(text(sql)).all()]

    return {
        "chats": fetch("SELECT channel, address, member_id FROM chats ORDER BY address"),
        "flows": fetch("SELECT channel, address, kind FROM flows"),
        "outbox": fetch("SELECT channel, address, dedupe_key, state FROM outbox"),
        "broadcasts": fetch("SELECT admin_channel, admin_address, enqueue_channel,"
                            " enqueue_address, state, sent FROM broadcasts"),
    }


@pytest.mark.parametrize("kind", DATABASES)
async def test_rows_keyed_by_chat_id_carry_over(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = BotDatabase(url)
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(_to_0001_with_rows)
            await db.upgrade()
            async with db.engine.connect() as conn:
                rows = await conn.run_sync(_rows)
        finally:
            await db.dispose()
    assert rows == {
        "chats": [("telegram", "1001", None), ("telegram", "7123456789", 41)],
        "flows": [("telegram", "7123456789", "bill")],
        "outbox": [("telegram", "1001", "event:9", "pending")],
        "broadcasts": [("telegram", "7123456789", "", "", "sending", 1)],
    }


@pytest.mark.parametrize("kind", DATABASES)
async def test_refused_while_an_announcement_is_enqueuing(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = BotDatabase(url)
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(_to_0001_with_rows)
                await conn.execute(text("UPDATE broadcasts SET state = 'enqueuing'"))
            with pytest.raises(RuntimeError, match="still being enqueued"):
                await db.upgrade()
        finally:
            await db.dispose()
