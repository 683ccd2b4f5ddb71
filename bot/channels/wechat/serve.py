"""``greenpoints bot --channel wechat``: the WeChat endpoint at ``/wechat`` over aiohttp, the
features behind it, the ledger event reader and the WeChat notice sender (issue 10).

Telegram and WeChat can run at once from one bot database, each process serving its channel:
the event reader's cursor is shared (whichever reads first enqueues for every channel), and each
channel's rows are drained by that channel's sender under its own lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from bot.channels.wechat.api import WeChatApi
from bot.channels.wechat.channel import WeChatChannel
from bot.channels.wechat.conversation import WeChatConversation
from bot.channels.wechat.endpoint import Outgoing, WeChatEndpoint
from bot.channels.wechat.features import features_runner
from bot.channels.wechat.inbound import InboundCodec
from bot.channels.wechat.notice_sender import WeChatNoticeSender
from bot.channels.wechat.outbound import CustomerService
from bot.channels.wechat.settings import NOTICE_TEMPLATES, WeChatSettings
from bot.channels.wechat.tagging import Tagger, menu_retagger
from bot.chat.i18n import translator
from bot.chat.replies import Notice
from bot.config import Settings
from bot.features import neutral_router
from bot.outbox.event_reader import EventReader
from bot.outbox.notices import notice_text
from bot.services import Services, close_services, open_services

log = logging.getLogger(__name__)

CHANNEL = "wechat"


def _notice_text(notice: Notice, locale: str) -> str:
    return notice_text(notice, translator(locale)) or ""


async def serve_wechat(
    services: Services,
    wx: WeChatSettings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (``ready`` is set once the port listens); the caller owns
    ``services``."""
    db = services.db
    async with aiohttp.ClientSession() as http:
        api = WeChatApi(
            http, db, app_id=wx.app_id, app_secret=wx.app_secret.get_secret_value(),
            base_url=wx.api_url,
        )
        templates = {
            kind: template_id
            for kind in NOTICE_TEMPLATES
            if (template_id := wx.template_for(kind)) is not None
        }
        channel = WeChatChannel(api, db, templates, _notice_text)
        service = CustomerService(api, db)

        async def later(openid: str, outs: Sequence[Outgoing]) -> None:
            await service.send(openid, outs)

        aes_key = wx.aes_key.get_secret_value() if wx.aes_key else None
        retag = menu_retagger(Tagger(api, db), services)  # menus follow role and language
        endpoint = WeChatEndpoint(
            InboundCodec(wx.token.get_secret_value(), wx.app_id, aes_key),
            db,
            WeChatConversation(api, db, features_runner(services, neutral_router(), retag)),
            later,
            deadline=wx.deadline_seconds,
        )
        app = web.Application()
        endpoint.routes(app)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, wx.listen, wx.port)
        sender = WeChatNoticeSender(db, services.chats, channel)
        reader = EventReader(services, on_enqueued=sender.wake)
        tasks: list[asyncio.Task[None]] = []
        try:
            await site.start()
            log.info("wechat: serving /wechat on %s:%d", wx.listen, wx.port)
            if ready is not None:
                ready.set()
            with contextlib.suppress(Exception):
                await reader.position()
            tasks = [
                asyncio.create_task(reader.run(), name="event-reader"),
                asyncio.create_task(sender.run(), name="wechat-sender"),
            ]
            await stop.wait()
        finally:
            reader.stop()
            sender.stop()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task
            await endpoint.drain()
            await runner.cleanup()


async def run_wechat(settings: Settings, wx: WeChatSettings) -> None:
    services = await open_services(settings, channel=CHANNEL)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await serve_wechat(services, wx, stop)
    finally:
        await close_services(services)
