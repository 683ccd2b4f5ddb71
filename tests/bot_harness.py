"""The whole bot, running: real ledger (SQLite or PostgreSQL), real bot database, polling a
fake Bot API server over real HTTP.

The bot reaches the ledger in-process (the embedded default) or, with ``ledger="http"``, over
HTTP through the ledger's own API server, which a test can stop to see how the bot behaves
when the ledger is down, or slow down (``Harness.hold_answers``) to see how it behaves when the
ledger does the work but its answer does not arrive in time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from telegram import Update

from bot.channels.telegram import background
from bot.channels.telegram.app import build_application, halt, launch
from bot.channels.telegram.context import App
from bot.config import Settings
from bot.outbox.event_reader import ReaderTuning
from bot.outbox.sender import SenderTuning
from bot.services import Services
from bot.storage.db import BotDatabase
from ledger import apikeys
from ledger.api.http import build_app
from ledger.models import MerchantIn
from ledger.principal import SYSTEM, Principal
from ledger.service import LedgerService
from ledger_client.base import LedgerClient
from ledger_client.http import HttpLedgerClient
from ledger_client.inprocess import InProcessLedgerClient
from tests.databases import fresh_database
from tests.fake_telegram import FakeTelegram, Person, Sent

TOKEN = "123456:TEST-TOKEN"
SHOP = {"lat": 30.2341, "lon": 119.7239}


@dataclass
class Handled:
    """One request the ledger's HTTP server handled: method, path, JSON body (or None), status,
    and the JSON answer it sent (or kept back)."""

    method: str
    path: str
    body: Any
    status: int
    answer: Any


@dataclass
class AnswerGate:
    """Between the ledger's work and its answer: while a request's path is held, the ledger
    does the work (books, commits) and then keeps the answer back until ``release`` — what a
    bot sees of an overloaded host or a slow network: its own timeout, not an error."""

    held_paths: set[str] = field(default_factory=set)
    handled: list[Handled] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._released.set()

    def hold(self, method: str, path: str) -> None:
        self.held_paths.add(f"{method} {path}")
        self._released.clear()

    def release(self) -> None:
        self.held_paths.clear()
        self._released.set()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        held = f"{request.method} {request.path}" in self.held_paths
        body = _json(await request.read())  # cached: the handler reads the same bytes
        response = await handler(request)
        answer = _json(response.body) if isinstance(response, web.Response) else None
        self.handled.append(Handled(request.method, request.path, body, response.status, answer))
        if held:
            await self._released.wait()
        return response


def _json(raw: object) -> Any:
    if not isinstance(raw, bytes) or not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _ledger_app(ledger: LedgerService, gate: AnswerGate) -> web.Application:
    app = build_app(ledger)
    app.middlewares.insert(0, gate.middleware)  # outermost: it sees the final status
    return app


@dataclass
class Harness:
    fake: FakeTelegram
    app: App
    services: Services
    ledger: LedgerService
    shop_id: int
    ledger_server: TestServer | None = None
    answers: AnswerGate = field(default_factory=AnswerGate)
    processed: set[int] = field(default_factory=set)
    _processed_changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ledger_port: int | None = None

    async def handled(self, update_id: int, within: float = 10.0) -> None:
        """Wait until the application has finished with this update (handlers and error
        handler alike): the way to assert that the bot said nothing, without sleeping."""
        async with asyncio.timeout(within), self._processed_changed:
            await self._processed_changed.wait_for(lambda: update_id in self.processed)

    async def _mark_processed(self, update_id: int) -> None:
        async with self._processed_changed:
            self.processed.add(update_id)
            self._processed_changed.notify_all()

    async def stop_ledger(self) -> None:
        """Take the ledger's HTTP server away, as an outage would (``ledger="http"`` only)."""
        assert self.ledger_server is not None, "running_bot(..., ledger='http') has no server"
        self._ledger_port = self.ledger_server.port  # close() forgets it
        await self.ledger_server.close()

    async def restart_ledger(self) -> None:
        """Bring the ledger's HTTP server back on the same address, as after an outage."""
        assert self.ledger_server is not None, "running_bot(..., ledger='http') has no server"
        port = self.ledger_server.port or self._ledger_port
        self.ledger_server = TestServer(
            _ledger_app(self.ledger, self.answers), host="127.0.0.1", port=port
        )
        await self.ledger_server.start_server()

    def hold_answers(self, method: str, path: str) -> None:
        """From now on the ledger does ``method path``'s work but keeps its answer back until
        ``release_answers`` (``ledger="http"`` only): the bot's client times out."""
        assert self.ledger_server is not None, "running_bot(..., ledger='http') has no server"
        self.answers.hold(method, path)

    def release_answers(self) -> None:
        self.answers.release()

    def ledger_requests(self, method: str, path: str) -> list[Handled]:
        """What the ledger's HTTP server handled for ``method path``, in order."""
        return [h for h in self.answers.handled if (h.method, h.path) == (method, path)]

    def person(self, user_id: int, name: str = "测试用户", language_code: str | None = "zh-hans"
               ) -> Person:
        return Person(self.fake, user_id, name, language_code)

    async def ask(self, person: Person, text: str) -> Sent:
        """Say ``text`` and return the bot's first message back."""
        before = len(self.fake.sent)
        person.says(text)
        return await self.fake.next_to(person.id, before)

    async def tap(self, person: Person, data: str, on: Sent) -> Sent:
        """Tap a button and return the first message sent or edited in reply."""
        before = len(self.fake.sent)
        person.taps(data, on)
        return await self.fake.next_to(person.id, before)

    async def tap_answer(
        self, person: Person, data: str, on: Sent, *, silent: bool = False
    ) -> dict[str, Any]:
        """Tap a button and return the toast it got (answerCallbackQuery); with ``silent``,
        also check that the tap sent or edited no message."""
        before, answered = len(self.fake.sent), len(person.answered_callbacks())
        await self.handled(person.taps(data, on))
        assert len(person.answered_callbacks()) == answered + 1
        if silent:
            assert [s for s in self.fake.sent[before:] if s.chat_id == person.id] == []
        return person.answered_callbacks()[answered]

    def ledger_as(self, role: str, merchant_id: int | None = None) -> InProcessLedgerClient:
        return InProcessLedgerClient(self.ledger, Principal(role, merchant_id))  # type: ignore[arg-type]

    async def settle(self, within: float = 10.0) -> None:
        """Let every update pushed so far be handled, then read pending ledger events and send
        everything due, now. (A reply can reach the fake server before its handler is done.)"""
        pushed = range(1, self.fake.last_update_id + 1)
        async with asyncio.timeout(within), self._processed_changed:
            await self._processed_changed.wait_for(
                lambda: all(u in self.processed for u in pushed)
            )
        await background.settle(self.app)

    @property
    def background(self) -> background.Background:
        """The running event reader and outbox sender."""
        running = background.running(self.app)
        assert running is not None
        return running


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


def _track_processing(app: App, harness: Harness) -> None:
    """Note each update once the application is done with it (see ``Harness.handled``)."""
    original = app.process_update

    async def process_update(update: object) -> None:
        try:
            await original(update)
        finally:
            if isinstance(update, Update):
                await harness._mark_processed(update.update_id)

    app.process_update = process_update  # type: ignore[method-assign]


async def _ledger_client(
    ledger: LedgerService, transport: str, gate: AnswerGate, total_s: float
) -> tuple[LedgerClient, TestServer | None]:
    if transport == "inprocess":
        return InProcessLedgerClient(ledger, Principal("bot")), None
    if transport != "http":
        raise ValueError(f"unknown ledger transport {transport!r}")
    key = await apikeys.create(ledger.ctx, "bot", None)
    server = TestServer(_ledger_app(ledger, gate), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    # Short timeouts and quick retries: an outage should be reported in well under a second.
    client = HttpLedgerClient(url, key, total_timeout=total_s, connect_timeout=1.0, backoff=0.01)
    return client, server


@asynccontextmanager
async def running_bot(
    kind: str,
    tmp_path: Path,
    *,
    ledger: str = "inprocess",
    ledger_timeout: float = 3.0,
    sender_tuning: SenderTuning | None = None,
    reader_tuning: ReaderTuning | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """The bot on ``kind`` databases (sqlite or postgres), reaching the ledger ``ledger``-wise
    (inprocess or http; over HTTP the bot's client gives up on one attempt after
    ``ledger_timeout`` seconds); the tunings shorten the background work's waits."""
    fake = FakeTelegram()
    await fake.start()
    async with fresh_database(kind, tmp_path) as ledger_url, fresh_database(
        kind, tmp_path
    ) as bot_url:
        service = await LedgerService.open(ledger_url)
        shop_id = await seed_shops(service)
        gate = AnswerGate()
        client, server = await _ledger_client(service, ledger, gate, ledger_timeout)
        config = Settings(
            _env_file=None,  # type: ignore[call-arg]
            telegram_token=TOKEN, telegram_api_url=fake.url, ledger_url=ledger_url,
            database_url=bot_url, rate_overall=100_000, rate_per_chat=1000,
            **settings,
        )
        db = BotDatabase(bot_url)
        await db.upgrade()
        services = Services(config, client, db)
        starters, stoppers = background.hooks(
            services, sender_tuning=sender_tuning, reader_tuning=reader_tuning
        )
        app = build_application(services, TOKEN, api_url=fake.url, on_start=starters,
                                on_stop=stoppers)
        harness = Harness(fake, app, services, service, shop_id, server, gate)
        _track_processing(app, harness)
        try:
            async with app:
                await launch(app)
                assert app.updater is not None
                await app.updater.start_polling(poll_interval=0.0, timeout=1)
                try:
                    yield harness
                finally:
                    await app.updater.stop()
                    await halt(app)
        finally:
            gate.release()  # answers still held end, so the server can close
            await client.close()
            if harness.ledger_server is not None:
                await harness.ledger_server.close()
            await db.dispose()
            await service.close()
            await fake.close()


def tg(chat_id: int) -> tuple[str, str]:
    """A Telegram chat's key in the bot's tables: ("telegram", the chat id in decimal)."""
    return "telegram", str(chat_id)
