"""Webhook mode: Telegram's secret-token header is required; with it, updates are answered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.app import build_application, halt, launch
from bot.config import Settings
from bot.services import Services
from bot.storage.db import BotDatabase
from bot.webhook import SECRET_HEADER, build_web_app
from ledger.principal import Principal
from ledger.service import LedgerService
from ledger_client.inprocess import InProcessLedgerClient
from tests.fake_telegram import FakeTelegram

TOKEN = "123456:WEBHOOK"
SECRET = "s3cret-token_for-tests"
HOOK = "https://bot.example/telegram/hook"


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    await fake.start()
    ledger = await LedgerService.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    db = BotDatabase(f"sqlite:///{tmp_path / 'bot.db'}")
    await db.upgrade()
    settings = Settings(_env_file=None, telegram_token=TOKEN,  # type: ignore[call-arg]
                        telegram_api_url=fake.url, webhook_url=HOOK)
    services = Services(settings, InProcessLedgerClient(ledger, Principal("bot")), db)
    app = build_application(services, TOKEN, api_url=fake.url)
    server = TestServer(build_web_app(app, HOOK, SECRET), host="127.0.0.1")
    async with app:
        await launch(app)
        await server.start_server()
        try:
            yield fake, str(server.make_url("/telegram/hook"))
        finally:
            await server.close()
            await halt(app)
    await db.dispose()
    await ledger.close()
    await fake.close()


def _update(update_id: int, text: str) -> dict[str, object]:
    user = {"id": 77, "is_bot": False, "first_name": "Web", "language_code": "en"}
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_790_000_000, "text": text, "from": user,
        "chat": {"id": 77, "type": "private"},
        "entities": [{"type": "bot_command", "offset": 0, "length": len(text)}],
    }}


async def test_requests_without_the_secret_are_refused(
    webhook: tuple[FakeTelegram, str]
) -> None:
    fake, url = webhook
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET + "x"}):
            async with http.post(url, json=_update(1, "/help"), headers=headers) as response:
                assert response.status == 403
        async with http.post(url, data=b"not json", headers={SECRET_HEADER: SECRET}) as response:
            assert response.status == 400
    assert fake.sent == []


async def test_updates_with_the_secret_are_answered(webhook: tuple[FakeTelegram, str]) -> None:
    fake, url = webhook
    async with aiohttp.ClientSession() as http, http.post(
        url, json=_update(2, "/help"), headers={SECRET_HEADER: SECRET}
    ) as response:
        assert response.status == 200
    reply = await fake.next_to(77, 0)
    assert reply.text.startswith("Here is what I can do:")
