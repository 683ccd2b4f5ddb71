"""``greenpoints bot``: open the services, build the application, run polling or webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys

from aiohttp import web

from bot.app import Hook, build_application, halt, launch
from bot.config import Settings, SettingsError, load_settings, require_token
from bot.context import App
from bot.services import Services
from bot.storage.db import BotDatabase
from bot.webhook import build_web_app
from ledger_client import connect

log = logging.getLogger(__name__)


async def open_services(settings: Settings, channel: str = "telegram") -> Services:
    api_key = settings.ledger_api_key.get_secret_value() if settings.ledger_api_key else None
    ledger = await connect(settings.ledger_url, api_key, role="bot")
    db = BotDatabase(settings.database_url)
    await db.upgrade()
    return Services(settings, ledger, db, channel=channel)


async def close_services(services: Services) -> None:
    await services.ledger.close()
    await services.db.dispose()


def background_hooks(services: Services) -> tuple[list[Hook], list[Hook]]:
    """The event reader and the outbox sender, started with the application."""
    from bot import background

    return background.hooks(services)


async def run_bot(settings: Settings) -> None:
    token = require_token(settings)
    services = await open_services(settings)
    starters, stoppers = background_hooks(services)
    app = build_application(
        services, token, api_url=settings.telegram_api_url, on_start=starters, on_stop=stoppers
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with app:
            await launch(app)
            if settings.webhook_url:
                await _serve_webhook(app, settings, stop)
            else:
                assert app.updater is not None
                await app.updater.start_polling(drop_pending_updates=False)
                log.info("polling as @%s", services.bot_username)
                await stop.wait()
                await app.updater.stop()
            await halt(app)
    finally:
        await close_services(services)


async def _serve_webhook(app: App, settings: Settings, stop: asyncio.Event) -> None:
    assert settings.webhook_url is not None
    secret = (
        settings.webhook_secret.get_secret_value()
        if settings.webhook_secret
        else secrets.token_urlsafe(32)
    )
    runner = web.AppRunner(build_web_app(app, settings.webhook_url, secret), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.webhook_listen, settings.webhook_port).start()
    await app.bot.set_webhook(settings.webhook_url, secret_token=secret)
    log.info("webhook at %s", settings.webhook_url)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> int:
    try:
        settings = load_settings()
        require_token(settings)
    except SettingsError as exc:
        print(f"greenpoints bot: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(run_bot(settings))
    except SettingsError as exc:
        print(f"greenpoints bot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
