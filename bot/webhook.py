"""The bot's web port: Telegram's webhook (in webhook mode), ``/healthz`` and ``/metrics``.

In webhook mode one aiohttp server takes Telegram's POSTs and answers the probes; when polling,
the same application without the webhook route runs on ``GREENPOINTS_WEB_HOST``/``_PORT``
(``bot.runtime``), so a bot is watched the same way whichever way it gets its updates.

Webhook requests without Telegram's secret-token header (or with a wrong one) are refused before
any parsing. Behind a load balancer, several of these can run: all state is in the databases.

``/healthz`` answers 200 while the bot's own database answers, 503 when it does not: without it
the bot can neither keep profiles nor send notices, and a restart or another replica should take
over. The ledger's reachability is reported but does not fail the check — the bot still answers
people (with "try again in a moment") and the outbox still drains while the ledger is away, and
restarting the bot would not bring the ledger back.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from telegram import Update

from bot.background import running
from bot.context import SERVICES_KEY, App
from bot.ops.metrics import metrics_of
from bot.services import Services
from ledger_client.errors import LedgerClientError, Unavailable

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
APP_KEY: web.AppKey[App] = web.AppKey("telegram_app")
SECRET_KEY: web.AppKey[str] = web.AppKey("secret", str)
CHECK_TIMEOUT = 3.0  # seconds each health check may take (a probe's own timeout is longer)


async def receive(request: web.Request) -> web.Response:
    secret = request.app[SECRET_KEY]
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        log.warning("webhook request without the right secret token from %s", request.remote)
        return web.json_response({"ok": False}, status=403)
    try:
        data = await request.json()
        app = request.app[APP_KEY]
        update = Update.de_json(data, app.bot)
    except (ValueError, TypeError, KeyError, json.JSONDecodeError):
        return web.json_response({"ok": False}, status=400)
    await app.update_queue.put(update)
    return web.json_response({"ok": True})


def _services(app: App) -> Services:
    services = app.bot_data[SERVICES_KEY]
    assert isinstance(services, Services)
    return services


async def _database(services: Services) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), services.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # whatever the driver raises, the answer is the same
        log.warning("health: the bot's database does not answer: %s", type(exc).__name__)
        return "unreachable"
    return "ok"


async def _ledger(services: Services) -> str:
    """Any answer from the ledger means it is there; only silence is ``unreachable``."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await services.ledger.events(after=0, limit=1)
    except (Unavailable, TimeoutError):
        return "unreachable"
    except LedgerClientError as exc:
        return f"refused: {type(exc).__name__}"
    except Exception as exc:  # e.g. an embedded ledger whose database is gone
        log.warning("health: the ledger check failed: %s", type(exc).__name__)
        return "unreachable"
    return "ok"


def _sender(app: App) -> str:
    background = running(app)
    if background is None:
        return "stopped"
    return "active" if background.sender.active else "standby"


async def health_report(app: App) -> tuple[int, dict[str, Any]]:
    """The status code and body of ``/healthz``: both checks run together, each time-bounded."""
    services = _services(app)
    database, ledger = await asyncio.gather(_database(services), _ledger(services))
    healthy = database == "ok"
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": database,
        "ledger": ledger,
        "sender": _sender(app),
    }
    return (200 if healthy else 503), body


async def health(request: web.Request) -> web.Response:
    status, body = await health_report(request.app[APP_KEY])
    return web.json_response(body, status=status)


async def metrics(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    collected = metrics_of(app)
    await collected.refresh(_services(app).db)
    return web.Response(
        body=generate_latest(collected.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def webhook_path(webhook_url: str) -> str:
    return urlparse(webhook_url).path or "/"


def build_web_app(
    app: App, webhook_url: str | None = None, secret: str | None = None
) -> web.Application:
    """The bot's aiohttp application: the probes always, Telegram's webhook when given a URL."""
    web_app = web.Application(client_max_size=1024 * 1024)
    web_app[APP_KEY] = app
    if webhook_url is not None:
        if not secret:
            raise ValueError("a webhook needs a secret token")
        web_app[SECRET_KEY] = secret
        web_app.router.add_post(webhook_path(webhook_url), receive)
    web_app.router.add_get("/healthz", health)
    web_app.router.add_get("/metrics", metrics)
    return web_app
