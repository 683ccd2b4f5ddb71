"""The WeChat channel's real parts wired together for tests: a bot database (SQLite file or
PostgreSQL), the /wechat endpoint served on 127.0.0.1, our API client pointed at the fake.

Until the channel-neutral core lands, the conversation behind the endpoint is ``ScriptedBot``:
small, deterministic replies that exercise what the channel must guarantee (one passive reply,
the rest as service messages, pages within 2,048 bytes, the deadline), counting each delivery it
was handed so tests can prove a retried delivery ran once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.channels.wechat.api import WeChatApi
from bot.channels.wechat.conversation import WeChatConversation
from bot.channels.wechat.endpoint import PATH, Handler, Outgoing, OutText, WeChatEndpoint
from bot.channels.wechat.features import features_runner
from bot.channels.wechat.inbound import Inbound, InboundCodec
from bot.channels.wechat.outbound import CustomerService
from bot.channels.wechat.render import page_text
from bot.channels.wechat.tagging import Tagger, menu_retagger
from bot.config import Settings
from bot.features import neutral_router
from bot.services import Services
from bot.storage.db import BotDatabase
from ledger.principal import Principal
from ledger.service import LedgerService
from ledger_client.inprocess import InProcessLedgerClient
from tests.bot_harness import seed_shops
from tests.databases import fresh_postgres
from tests.fake_wechat import FakeWeChat

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, test only


@dataclass
class ScriptedBot:
    handled: Counter[str] = field(default_factory=Counter)  # delivery key -> times handled
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # "slow" waits for it

    async def __call__(self, inbound: Inbound) -> Sequence[Outgoing]:
        self.handled[inbound.key] += 1
        fields = inbound.fields
        if inbound.msg_type == "text":
            content = str(fields.get("Content", ""))
            if content == "slow":
                await self.gate.wait()
                return [OutText("slow answer")]
            if content == "three":
                return [OutText("one"), OutText("two"), OutText("three")]
            if content == "long":
                return [OutText(p) for p in page_text("积分说明\n" * 600)]
            return [OutText(f"got: {content}")]
        message = inbound.message  # wechatpy's typed message or event
        if message.type == "location":
            lat, lon = message.location
            return [OutText(f"at {lat},{lon}")]
        if message.type == "event" and message.event == "subscribe_scan":
            return [OutText(f"welcome {message.scene_id}")]
        if message.type == "event" and message.event == "subscribe":
            return [OutText("welcome")]
        if message.type == "event" and message.event == "scancode_waitmsg":
            return [OutText(f"scanned {message.scan_result}")]
        return []


@dataclass
class WeChatRig:
    fake: FakeWeChat
    db: BotDatabase
    api: WeChatApi
    endpoint: WeChatEndpoint
    bot: ScriptedBot
    url: str
    session: aiohttp.ClientSession


@contextlib.asynccontextmanager
async def bot_database_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'bot-{uuid.uuid4().hex[:8]}.db'}"
    else:
        async with fresh_postgres() as url:
            yield url


@contextlib.asynccontextmanager
async def serve_endpoint(endpoint: WeChatEndpoint) -> AsyncIterator[str]:
    app = web.Application()
    endpoint.routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url(PATH))
    finally:
        await endpoint.drain()
        await server.close()


@contextlib.asynccontextmanager
async def wechat_rig(
    db_url: str,
    *,
    aes_key: str | None = AES_KEY,
    deadline: float = 4.5,
    handler: Callable[[WeChatApi, BotDatabase], Handler] | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[WeChatRig]:
    """``handler(api, db)`` replaces the scripted bot behind the endpoint when given;
    ``clock`` is the endpoint's Unix clock for the deliveries' freshness."""
    fake = FakeWeChat(aes_key=aes_key)
    await fake.start()
    db = BotDatabase(db_url)
    await db.upgrade()
    session = aiohttp.ClientSession()
    try:
        api = WeChatApi(
            session, db, app_id=fake.app_id, app_secret=fake.app_secret, base_url=fake.api_url
        )
        bot = ScriptedBot()
        service = CustomerService(api, db)

        async def later(openid: str, outs: Sequence[Outgoing]) -> None:
            await service.send(openid, outs)

        endpoint = WeChatEndpoint(
            InboundCodec(fake.token, fake.app_id, aes_key, clock=clock),
            db,
            bot if handler is None else handler(api, db),
            later,
            deadline=deadline,
        )
        async with serve_endpoint(endpoint) as url:
            fake.bot_url = url
            yield WeChatRig(fake, db, api, endpoint, bot, url, session)
    finally:
        await fake.close()
        await session.close()
        await db.dispose()
    assert not fake.failures, fake.failures


@dataclass
class FeaturesRig:
    """The endpoint with the real features behind it (issue 10) and an in-process ledger."""

    rig: WeChatRig
    services: Services
    ledger: LedgerService
    shop_id: int


@contextlib.asynccontextmanager
async def features_rig(ledger_url: str, bot_url: str) -> AsyncIterator[FeaturesRig]:
    """The tests' shops seeded into a ledger at ``ledger_url``; ``WeChatConversation`` over the
    core's router behind the endpoint, the bot's tables at ``bot_url``."""
    ledger = await LedgerService.open(ledger_url)
    shop_id = await seed_shops(ledger)
    client = InProcessLedgerClient(ledger, Principal("bot"))
    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_token="123456:UNUSED", ledger_url=ledger_url, database_url=bot_url,
    )
    db = BotDatabase(bot_url)
    services = Services(config, client, db, channel="wechat")
    router = neutral_router()

    def handler(api: WeChatApi, _db: BotDatabase) -> Handler:
        on_menu = menu_retagger(Tagger(api, _db), services)
        return WeChatConversation(api, _db, features_runner(services, router, on_menu))

    try:
        async with wechat_rig(bot_url, handler=handler) as rig:
            yield FeaturesRig(rig, services, ledger, shop_id)
    finally:
        await client.close()
        await db.dispose()
        await ledger.close()
