"""What runs beside the handlers: the ledger event reader and the outbox sender.

Both start with the application (``launch``) and stop before it (``halt``). ``settle`` is what
the console and the tests call to let everything pending arrive now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from telegram import Bot
from telegram.request import BaseRequest, HTTPXRequest

from bot.channels.telegram.context import App, Hook
from bot.channels.telegram.http import AiohttpRequest
from bot.outbox.broadcast_runner import runner, start_runner, stop_runner
from bot.outbox.broadcasts import Broadcasts, record_outcomes
from bot.outbox.event_reader import EventReader, ReaderTuning
from bot.outbox.sender import ApiCaller, OutboxSender, SenderTuning
from bot.services import Services
from ledger_client.errors import LedgerClientError

log = logging.getLogger(__name__)

BACKGROUND_KEY = "background"


@dataclass
class Background:
    reader: EventReader
    sender: OutboxSender
    tasks: list[asyncio.Task[None]]
    own_request: BaseRequest | None


def sender_bot(app: App) -> tuple[Bot, BaseRequest | None]:
    """A plain PTB ``Bot`` for the sender, talking to the same Bot API as the application.

    Over the network it gets a connection pool of its own (aiohttp, see
    ``bot.channels.telegram.http``),
    so a long drain never makes people's replies wait for a connection, and the application's
    ``AIORateLimiter`` is not in its way (see ``bot.outbox.sender``); an in-process Bot API (the
    console) is shared as is. Returns the request the caller must initialize and shut down, if
    a new one was made.
    """
    bot = app.bot
    base_url = bot.base_url.removesuffix(bot.token)
    base_file_url = bot.base_file_url.removesuffix(bot.token)
    if isinstance(bot.request, HTTPXRequest | AiohttpRequest):
        own = AiohttpRequest(connections=64)
        plain = Bot(bot.token, base_url=base_url, base_file_url=base_file_url, request=own,
                    get_updates_request=own)
        return plain, own
    shared = Bot(bot.token, base_url=base_url, base_file_url=base_file_url,
                 request=bot.request, get_updates_request=bot.request)
    return shared, None


async def start_background(
    services: Services,
    bot: ApiCaller,
    *,
    own_request: BaseRequest | None = None,
    sender_tuning: SenderTuning | None = None,
    reader_tuning: ReaderTuning | None = None,
) -> Background:
    """Start the outbox sender (sending through ``bot``) and the ledger event reader."""
    settings = services.settings
    sender = OutboxSender(
        services.db,
        services.chats,
        bot,
        rate_overall=settings.rate_overall,
        rate_per_chat=settings.rate_per_chat,
        tuning=sender_tuning,
        resolvers={"broadcast": Broadcasts(services.db).resolve},
        on_outcomes=record_outcomes,
        channel=services.channel,
    )
    reader = EventReader(services, tuning=reader_tuning, on_enqueued=sender.wake)
    try:
        # Fix the starting point now, so nothing that happens after start-up is missed.
        await reader.position()
    except LedgerClientError as exc:
        log.warning("event feed: no starting point yet (%s); the reader will retry", exc)
    tasks = [
        asyncio.create_task(sender.run(), name="outbox-sender"),
        asyncio.create_task(reader.run(), name="event-reader"),
    ]
    return Background(reader, sender, tasks, own_request)


async def stop_background(background: Background) -> None:
    background.reader.stop()
    await background.sender.stop()
    done, pending = await asyncio.wait(background.tasks, timeout=60)
    for task in pending:
        task.cancel()
    for task in [*done, *pending]:
        with contextlib.suppress(asyncio.CancelledError):
            if (error := await _result(task)) is not None:
                log.error("background task %s ended with %r", task.get_name(), error)
    if background.own_request is not None:
        await background.own_request.shutdown()


async def catch_up(background: Background) -> None:
    """Read every pending ledger event now (``settle`` without announcements)."""
    try:
        await background.reader.catch_up()
    except LedgerClientError as exc:
        log.warning("event feed: could not catch up (%s)", exc)


def hooks(
    services: Services,
    *,
    sender_tuning: SenderTuning | None = None,
    reader_tuning: ReaderTuning | None = None,
) -> tuple[list[Hook], list[Hook]]:
    async def start(app: App) -> None:
        bot, own_request = sender_bot(app)
        if own_request is not None:
            await own_request.initialize()
        app.bot_data[BACKGROUND_KEY] = await start_background(
            services,
            bot,
            own_request=own_request,
            sender_tuning=sender_tuning,
            reader_tuning=reader_tuning,
        )
        await start_runner(app)

    async def stop(app: App) -> None:
        await stop_runner(app)
        background = app.bot_data.pop(BACKGROUND_KEY, None)
        if isinstance(background, Background):
            await stop_background(background)

    return [start], [stop]


async def _result(task: asyncio.Task[None]) -> BaseException | None:
    try:
        await task
    except Exception as exc:
        return exc
    return None


def running(app: App) -> Background | None:
    background = app.bot_data.get(BACKGROUND_KEY)
    return background if isinstance(background, Background) else None


async def settle(app: App) -> None:
    """Read every pending ledger event now and send everything due; return once nothing is.

    Rows waiting for a network retry later are not due, so they do not hold this up.
    """
    background = running(app)
    if background is None:
        return
    await catch_up(background)
    broadcasts = runner(app)
    await broadcasts.enqueued()
    await background.sender.settled()
    await broadcasts.report()
