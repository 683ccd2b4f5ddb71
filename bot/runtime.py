"""``greenpoints bot``: open the services, build the application, run polling or webhook.

Either way the bot's web port runs beside it (``serve_web``): in webhook mode the webhook's own
server, which also answers ``/healthz`` and ``/metrics``; when polling, a small server with just
those two on ``GREENPOINTS_WEB_HOST``:``GREENPOINTS_WEB_PORT`` (port 0 turns it off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from bot.channels.telegram.app import build_application, halt, launch
from bot.channels.telegram.context import App, Hook
from bot.channels.telegram.webhook import build_web_app
from bot.config import Settings, SettingsError, load_settings, require_token
from bot.ops.logs import configure_logging
from bot.services import Services, close_services, open_services

log = logging.getLogger(__name__)


def background_hooks(services: Services) -> tuple[list[Hook], list[Hook]]:
    """The event reader and the outbox sender, started with the application."""
    from bot.channels.telegram import background

    return background.hooks(services)


@contextlib.asynccontextmanager
async def serve_web(
    app: App,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
) -> AsyncIterator[list[str]]:
    """Run the bot's web port for the duration of the block; yields the URLs it listens on.

    With ``settings.webhook_url``: the webhook server on ``webhook_listen``:``webhook_port``,
    and Telegram is told to deliver there (with the secret token). Otherwise the probes alone on
    ``web_host``:``web_port``, or nothing when that port is 0. ``host`` and ``port`` override
    the settings' (tests pass port 0 for any free port).
    """
    secret: str | None = None
    if settings.webhook_url:
        secret = (
            settings.webhook_secret.get_secret_value()
            if settings.webhook_secret
            else secrets.token_urlsafe(32)
        )
        host = host if host is not None else settings.webhook_listen
        port = port if port is not None else settings.webhook_port
    else:
        if port is None and settings.web_port == 0:
            yield []
            return
        host = host if host is not None else settings.web_host
        port = port if port is not None else settings.web_port
    runner = web.AppRunner(build_web_app(app, settings.webhook_url, secret), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        urls = [_url(address) for address in runner.addresses if isinstance(address, tuple)]
        if settings.webhook_url:
            await app.bot.set_webhook(settings.webhook_url, secret_token=secret)
            log.info("webhook at %s; /healthz and /metrics on %s", settings.webhook_url, urls)
        else:
            log.info("/healthz and /metrics on %s", urls)
        yield urls
    finally:
        await runner.cleanup()


def _url(address: tuple[object, ...]) -> str:
    host, port = str(address[0]), address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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
            async with serve_web(app, settings):
                if settings.webhook_url:
                    await stop.wait()
                else:
                    assert app.updater is not None
                    await app.updater.start_polling(drop_pending_updates=False)
                    log.info("polling as @%s", services.bot_username)
                    await stop.wait()
                    await app.updater.stop()
            await halt(app)
    finally:
        await close_services(services)


def main(argv: Sequence[str] = ()) -> int:
    """``greenpoints bot [--channel telegram|wechat]``; a missing or bad setting stops start-up
    with one line (exit 2)."""
    args = list(argv)
    channel = "telegram"
    if args[:1] == ["--channel"] and len(args) == 2:
        channel = args[1]
    elif args:
        print(f"greenpoints bot: unexpected arguments {' '.join(args)!r} "
              "(usage: greenpoints bot [--channel telegram|wechat])", file=sys.stderr)
        return 2
    if channel == "wechat":
        return _main_wechat()
    if channel != "telegram":
        print(f"greenpoints bot: unknown channel {channel!r} (telegram or wechat)",
              file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        require_token(settings)
    except SettingsError as exc:
        print(f"greenpoints bot: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_level, json_lines=settings.json_logs, secrets=settings.secrets()
    )
    try:
        asyncio.run(run_bot(settings))
    except SettingsError as exc:
        print(f"greenpoints bot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _main_wechat() -> int:
    from bot.channels.wechat.serve import run_wechat
    from bot.channels.wechat.settings import load_wechat_settings

    try:
        settings = load_settings()
        wx = load_wechat_settings()
    except SettingsError as exc:
        print(f"greenpoints bot: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_level,
        json_lines=settings.json_logs,
        secrets=[*settings.secrets(), *wx.secrets()],
    )
    try:
        asyncio.run(run_wechat(settings, wx))
    except KeyboardInterrupt:
        return 130
    return 0
