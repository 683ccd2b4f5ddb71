"""The whole bot, running: real ledger (SQLite or PostgreSQL), real bot database, polling a
fake Bot API server over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot import background
from bot.app import build_application, halt, launch
from bot.config import Settings
from bot.context import App
from bot.services import Services
from bot.storage.db import BotDatabase
from ledger.models import MerchantIn
from ledger.principal import SYSTEM, Principal
from ledger.service import LedgerService
from ledger_client.inprocess import InProcessLedgerClient
from tests.databases import fresh_database
from tests.fake_telegram import FakeTelegram, Person

TOKEN = "123456:TEST-TOKEN"
SHOP = {"lat": 30.2341, "lon": 119.7239}


@dataclass
class Harness:
    fake: FakeTelegram
    app: App
    services: Services
    ledger: LedgerService
    shop_id: int

    def person(self, user_id: int, name: str = "测试用户", language_code: str | None = "zh-hans"
               ) -> Person:
        return Person(self.fake, user_id, name, language_code)

    def ledger_as(self, role: str, merchant_id: int | None = None) -> InProcessLedgerClient:
        return InProcessLedgerClient(self.ledger, Principal(role, merchant_id))  # type: ignore[arg-type]

    async def settle(self) -> None:
        """Read pending ledger events and send everything due, now."""
        await background.settle(self.app)


async def seed_shops(ledger: LedgerService) -> int:
    shop = await ledger.create_merchant(
        SYSTEM,
        MerchantIn(name="锦城绿色生活超市", category="grocery", address="钱王街88号",
                   hours="07:00-21:00", concession_bp=1000, voucher_cap_bp=2000, **SHOP),
    )
    for n, (category, dlat) in enumerate([("cafe", 0.002), ("bakery", 0.004), ("tea", 0.03)]):
        await ledger.create_merchant(
            SYSTEM, MerchantIn(name=f"测试{category}{n}", category=category,
                               lat=SHOP["lat"] + dlat, lon=SHOP["lon"]),
        )
    return shop.id


@asynccontextmanager
async def running_bot(
    kind: str, tmp_path: Path, **settings: Any
) -> AsyncIterator[Harness]:
    fake = FakeTelegram()
    await fake.start()
    async with fresh_database(kind, tmp_path) as ledger_url, fresh_database(
        kind, tmp_path
    ) as bot_url:
        ledger = await LedgerService.open(ledger_url)
        shop_id = await seed_shops(ledger)
        config = Settings(
            _env_file=None,  # type: ignore[call-arg]
            telegram_token=TOKEN, telegram_api_url=fake.url, ledger_url=ledger_url,
            database_url=bot_url, rate_overall=100_000, rate_per_chat=1000,
            **settings,
        )
        db = BotDatabase(bot_url)
        await db.upgrade()
        services = Services(config, InProcessLedgerClient(ledger, Principal("bot")), db)
        starters, stoppers = background.hooks(services)
        app = build_application(services, TOKEN, api_url=fake.url, on_start=starters,
                                on_stop=stoppers)
        try:
            async with app:
                await launch(app)
                assert app.updater is not None
                await app.updater.start_polling(poll_interval=0.0, timeout=1)
                try:
                    yield Harness(fake, app, services, ledger, shop_id)
                finally:
                    await app.updater.stop()
                    await halt(app)
        finally:
            await db.dispose()
            await ledger.close()
            await fake.close()
