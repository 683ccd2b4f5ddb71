"""The one factory that builds the Telegram application, for production, tests and the console.

Tests and the console pass their own ``request`` (a fake Bot API server's URL, or the console's
in-process request) and get exactly the application production runs.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ApplicationBuilder, ContextTypes, TypeHandler
from telegram.request import BaseRequest

from bot.channels.telegram.context import SERVICES_KEY, App, GPContext, Hook
from bot.channels.telegram.errors import on_error
from bot.channels.telegram.http import AiohttpRequest
from bot.channels.telegram.menus import register_defaults
from bot.channels.telegram.middleware import prepare
from bot.channels.telegram.routes import add_routes
from bot.features import neutral_router
from bot.ops.metrics import MeteredRateLimiter, instrument
from bot.outbox.broadcast_runner import runner
from bot.services import Services

log = logging.getLogger(__name__)


HOOKS_KEY = "hooks"


def build_application(
    services: Services,
    token: str,
    *,
    api_url: str | None = None,
    request: BaseRequest | None = None,
    updates_request: BaseRequest | None = None,
    on_start: list[Hook] | None = None,
    on_stop: list[Hook] | None = None,
) -> App:
    settings = services.settings
    builder = (
        ApplicationBuilder()
        .token(token)
        .context_types(ContextTypes(context=GPContext))
        .concurrent_updates(256)
        .rate_limiter(
            MeteredRateLimiter(
                overall_max_rate=settings.rate_overall, overall_time_period=1, max_retries=3
            )
        )
    )
    if api_url:
        builder = builder.base_url(f"{api_url}/bot").base_file_url(f"{api_url}/file/bot")
    if request is None:
        # aiohttp rather than PTB's default httpx: httpx cost ~3 ms of CPU per Bot API call
        # here (pool bookkeeping, a failed sniffio import each request), the largest share of
        # a /balance update outside the ledger (bench/bot_throughput.py). getUpdates gets its
        # own pool so a long poll never waits behind replies.
        request = AiohttpRequest(connections=64)
        updates_request = updates_request or AiohttpRequest(connections=2)
    builder = builder.request(request).get_updates_request(updates_request or request)

    app: App = builder.build()
    app.bot_data[SERVICES_KEY] = services
    services.announcer = runner(app)  # announcements' progress is edited through this app
    app.bot_data[HOOKS_KEY] = (list(on_start or []), list(on_stop or []))
    app.add_handler(TypeHandler(Update, prepare), group=-1)
    router = neutral_router()
    add_routes(app, router, router.routes)
    app.add_error_handler(on_error)
    instrument(app)
    return app


async def launch(app: App) -> None:
    """Start an initialized application: learn our username, set menus, start background work.

    Every way of running the bot (polling, webhook, console, tests) goes through here, since
    python-telegram-bot only calls ``post_init`` from its own ``run_*`` loops.
    """
    services = app.bot_data[SERVICES_KEY]
    assert isinstance(services, Services)
    await app.start()
    if app.bot.username:
        services.bot_username = app.bot.username
    await register_defaults(app.bot)
    starters, _stoppers = app.bot_data[HOOKS_KEY]
    for hook in starters:
        await hook(app)


async def halt(app: App) -> None:
    """Stop background work, then the application (still initialized; ``shutdown`` follows)."""
    _starters, stoppers = app.bot_data[HOOKS_KEY]
    for hook in reversed(stoppers):
        await hook(app)
    if app.running:
        await app.stop()
