"""``greenpoints bot --channel wechat``: a missing setting stops start-up with one line, and the
served endpoint answers the fake WeChat with the real features (issue 10)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from bot import runtime
from bot.channels.wechat.serve import serve_wechat
from bot.channels.wechat.settings import load_wechat_settings
from bot.config import Settings
from bot.services import Services
from bot.storage.db import BotDatabase
from ledger.principal import Principal
from ledger.service import LedgerService
from ledger_client.inprocess import InProcessLedgerClient
from tests.bot_harness import seed_shops
from tests.databases import fresh_database
from tests.fake_wechat import FakeWeChat
from tests.wechat_harness import AES_KEY, bot_database_url


def test_a_missing_setting_stops_start_up_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    for name in list(os.environ):
        if name.startswith("GREENPOINTS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GREENPOINTS_WECHAT_APP_ID", "wx00000000000fa4e1")
    monkeypatch.setenv("GREENPOINTS_WECHAT_APP_SECRET", "0000000000000000000000000000fa4e")
    assert runtime.main(["--channel", "wechat"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GREENPOINTS_WECHAT_TOKEN" in err, err
    assert runtime.main(["--channel", "carrier-pigeon"]) == 2
    assert "unknown channel 'carrier-pigeon'" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "kind", [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_the_served_endpoint_greets_a_follower(kind: str, tmp_path: Path) -> None:
    fake = FakeWeChat(aes_key=AES_KEY)
    await fake.start()
    async with (
        fresh_database(kind, tmp_path) as ledger_url,
        bot_database_url(kind, tmp_path) as bot_url,
    ):
        ledger = await LedgerService.open(ledger_url)
        await seed_shops(ledger)
        client = InProcessLedgerClient(ledger, Principal("bot"))
        db = BotDatabase(bot_url)
        await db.upgrade()
        config = Settings(_env_file=None, ledger_url=ledger_url, database_url=bot_url)  # type: ignore[call-arg]
        services = Services(config, client, db, channel="wechat")
        port = free_port()
        wx = load_wechat_settings(
            app_id=fake.app_id, app_secret=fake.app_secret, token=fake.token, aes_key=AES_KEY,
            api_url=fake.api_url, listen="127.0.0.1", port=port,
        )
        stop, ready = asyncio.Event(), asyncio.Event()
        serving = asyncio.create_task(serve_wechat(services, wx, stop, ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            fake.bot_url = f"http://127.0.0.1:{port}/wechat"
            hello = await fake.push(fake.event("o_new", "subscribe"))
            assert hello.text.startswith("欢迎使用绿色消费积分！\n"), hello.text
        finally:
            stop.set()
            await serving
            await fake.close()
            await client.close()
            await db.dispose()
            await ledger.close()
    assert not fake.failures, fake.failures
