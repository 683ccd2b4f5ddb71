"""The background work of a Telegram bot process: the outbox sender with a ``telegram.Bot`` of
its own, the ledger event reader and the announcement runner, started with the application
(``launch``) and stopped before it (``halt``). ``settle`` is what the tests call to let
everything pending arrive now.
"""

from __future__ import annotations

from telegram import Bot
from telegram.request import BaseRequest, HTTPXRequest

from bot.background import Background, catch_up, start_background, stop_background
from bot.channels.telegram.context import App, Hook
from bot.channels.telegram.http import AiohttpRequest
from bot.outbox.broadcast_runner import runner, start_runner, stop_runner
from bot.outbox.event_reader import ReaderTuning
from bot.outbox.sender import SenderTuning
from bot.services import Services

BACKGROUND_KEY = "background"


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
