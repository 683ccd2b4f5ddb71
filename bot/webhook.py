"""Webhook mode: an aiohttp server that takes Telegram's POSTs and feeds the application.

Requests without Telegram's secret-token header (or with a wrong one) are refused before any
parsing. Behind a load balancer, several of these can run: all state is in the databases.
"""

from __future__ import annotations

import hmac
import json
import logging
from urllib.parse import urlparse

from aiohttp import web
from telegram import Update

from bot.context import App

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
APP_KEY: web.AppKey[App] = web.AppKey("telegram_app")
SECRET_KEY: web.AppKey[str] = web.AppKey("secret", str)


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


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def webhook_path(webhook_url: str) -> str:
    return urlparse(webhook_url).path or "/"


def build_web_app(app: App, webhook_url: str, secret: str) -> web.Application:
    web_app = web.Application(client_max_size=1024 * 1024)
    web_app[APP_KEY] = app
    web_app[SECRET_KEY] = secret
    web_app.router.add_post(webhook_path(webhook_url), receive)
    web_app.router.add_get("/healthz", health)
    return web_app
