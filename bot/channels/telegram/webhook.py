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
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from telegram import Update

from bot.channels.telegram.background import running
from bot.channels.telegram.context import SERVICES_KEY, App
from bot.ops.metrics import metrics_of
from bot.services import Services
from ledger_client.errors import LedgerClientError, Unavailable

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
APP_KEY: web.AppKey[App] = web.AppKey("telegram_app")
SECRET_KEY: web.AppKey[str] = web.AppKey("secret", str)
CHECK_TIMEOUT = 3.0  # seconds each health check may take (a probe's own timeout is longer)


MAX_DEPTH = 32  # far deeper than any Telegram update nests; deeper is not Telegram


def _secret_matches(request: web.Request) -> bool:
    """Header bytes that are not UTF-8 reach us as surrogate escapes; they are compared as the
    bytes that were sent, so any such header is simply a wrong secret (403), never a 500."""
    given = request.headers.get(SECRET_HEADER, "")
    sent = given.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sent, request.app[SECRET_KEY].encode())


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a key given twice")
    return out


def _depth(value: Any) -> int:
    deepest, level = 0, [value]
    while level:
        deepest += 1
        if deepest > MAX_DEPTH:
            break
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
        ]
    return deepest


def parse_update(body: bytes) -> dict[str, Any]:
    """The update object in a webhook body; ValueError for anything Telegram would not send:
    bytes that are not UTF-8 JSON, a key twice, anything but an object with an integer
    ``update_id``, nesting deeper than ``MAX_DEPTH``."""
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if not isinstance(data, dict):
        raise ValueError("not an object")
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        raise ValueError("no update_id")
    if _depth(data) > MAX_DEPTH:
        raise ValueError("nested too deep")
    return data


async def receive(request: web.Request) -> web.Response:
    if not _secret_matches(request):
        log.warning("webhook request without the right secret token from %s", request.remote)
        return web.json_response({"ok": False}, status=403)
    app = request.app[APP_KEY]
    try:
        data = parse_update(await request.read())
        update = Update.de_json(data, app.bot)
    except web.HTTPException:
        raise  # 413: larger than any update
    except Exception as exc:  # anything the library cannot read is a bad request, not a fault
        log.warning("webhook body refused: %s", type(exc).__name__)
        return web.json_response({"ok": False}, status=400)
    await app.update_queue.put(update)
    return web.json_response({"ok": True})


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """HTTP errors stay themselves (404, 405, 413) as JSON; a fault is logged without the path's
    whole text and answered 500 once, never as aiohttp's HTML page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response(
            {"ok": False, "error": exc.reason}, status=exc.status, headers=allow
        )
    except Exception:
        log.exception("web port fault in %s %.200s", request.method, request.path)
        return web.json_response({"ok": False}, status=500)


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
    web_app = web.Application(client_max_size=1024 * 1024, middlewares=[errors_middleware])
    web_app[APP_KEY] = app
    if webhook_url is not None:
        if not secret:
            raise ValueError("a webhook needs a secret token")
        web_app[SECRET_KEY] = secret
        web_app.router.add_post(webhook_path(webhook_url), receive)
    web_app.router.add_get("/healthz", health)
    web_app.router.add_get("/metrics", metrics)
    return web_app
