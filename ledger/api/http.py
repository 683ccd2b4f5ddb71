"""The ledger over HTTP (aiohttp): routes from the operation table, JSON errors for everything.

Stateless: any number of these processes can serve one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from ledger import observability
from ledger.api import openapi, wire
from ledger.api.operations import OPERATIONS, Operation, encode, invoke
from ledger.errors import (
    InvalidRequest,
    LedgerError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from ledger.principal import PUBLIC
from ledger.service import LedgerService

log = logging.getLogger(__name__)

SERVICE: web.AppKey[LedgerService] = web.AppKey("service", LedgerService)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
MAX_BODY = 64 * 1024


def _json(
    status: int, payload: Any, request_id: str | None = None, allow: str | None = None
) -> web.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    if allow is not None:
        headers["Allow"] = allow  # RFC 9110: a 405 lists the methods the resource does support
    return web.Response(
        status=status, body=encode(payload), content_type="application/json", headers=headers
    )


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every answer is JSON, and no input — however odd — turns into a 500."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given[:64] if given.isprintable() and given else secrets.token_hex(8)
    request[REQUEST_ID] = request_id
    observability.request_id.set(request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        allow = exc.headers.get("Allow") if exc.status == 405 else None
        return _json(exc.status, _error(exc.status, code, exc.reason), request_id, allow)
    except LedgerError as exc:
        return _json(exc.status, exc.to_json(), request_id)
    except Exception:
        log.exception(
            "unhandled error in %s %.200s request_id=%s", request.method, request.path, request_id
        )
        return _json(500, _error(500, "internal", "internal error"), request_id)
    response.headers.setdefault("X-Request-Id", request_id)
    return response


def _bearer(request: web.Request) -> str | None:
    """The key in ``Authorization: Bearer <key>``. Keys are ASCII; bytes that are not UTF-8 reach
    us as surrogates, which cannot even be hashed, so any non-ASCII token is simply not a key."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() != "bearer ":
        return None
    token = auth[7:].strip()
    if not token.isascii():
        raise Unauthorized("unknown or revoked API key")
    return token


def _query_items(request: web.Request) -> list[tuple[str, str]]:
    """The query's pairs, every one; percent-escapes that are not UTF-8 are refused, not
    replaced with U+FFFD (the parser's lenient reading) and looked up as some other text."""
    raw = request.rel_url.raw_query_string
    try:
        unquote_to_bytes(raw.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("query: not UTF-8") from None
    return list(request.query.items())


def _json_content_type(request: web.Request, body: bytes) -> None:
    """A body is read only as what it says it is: JSON in UTF-8. Anything else (text/plain, a
    form, multipart, XML) is a 415, never parsed as JSON on a guess (issue 14). An empty body
    without a Content-Type is the empty request ``{}``."""
    given = request.headers.get("Content-Type")
    if given is None and not body:
        return
    charset = (request.charset or "utf-8").lower()
    if request.content_type != "application/json" or charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(
            "send the body as application/json (UTF-8)",
            # Header bytes that are not UTF-8 arrive as surrogate escapes: echoed as escapes.
            content_type=(given or "")[:80].encode("ascii", "backslashreplace").decode(),
        )


def _route(op: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        service = request.app[SERVICE]
        principal = (
            PUBLIC
            if op.public
            else await service.keys.authenticate(_bearer(request), request.remote)
        )
        query = wire.check_query(_query_items(request))
        if op.csv is not None and "format" not in query and _wants_csv(request):
            query["format"] = "csv"
        body: bytes | None = None
        if op.body is not None:
            body = await request.read()
            _json_content_type(request, body)
        with observability.LATENCY.labels(op.name).time():
            status, payload = await invoke(
                service, principal, op.name, dict(request.match_info), query, body
            )
        observability.REQUESTS.labels(op.name, str(status)).inc()
        if status >= 500:
            log.warning("%s failed: %s request_id=%s", op.name, payload, request[REQUEST_ID])
        if isinstance(payload, str):
            return web.Response(
                status=status,
                text=payload,
                content_type="text/csv",
                charset="utf-8",
                headers={"X-Request-Id": request[REQUEST_ID]},
            )
        return _json(status, payload, request[REQUEST_ID])

    return handle


def _wants_csv(request: web.Request) -> bool:
    """``Accept: text/csv`` (alone or preferred to JSON) asks for a CSV answer."""
    accept = request.headers.get("Accept", "").lower()
    return "text/csv" in accept and "application/json" not in accept


async def _health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        async with service.ctx.db.read() as session:
            await session.execute(text("SELECT 1"))
    except (Unavailable, OSError) as exc:
        return _json(503, _error(503, "unavailable", str(exc)))
    return _json(200, {"status": "ok"})


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(service: LedgerService) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    app[SERVICE] = service
    document = json.dumps(openapi.document()).encode()

    async def spec(_request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get("/healthz", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/v1/openapi.json", spec)
    # Literal paths before templated ones, so /v1/merchants/nearby is not read as an id.
    for op in sorted(OPERATIONS, key=lambda o: "{" in o.path):
        app.router.add_route(op.method, _digits_only(op.path), _route(op))
    return app


def _digits_only(path: str) -> str:
    """Path ids match digits only, so ``/v1/members/resolve`` is one resource (GET on it is a
    405 listing POST, as the document says) and not "the member called resolve"; a path that is
    no id at all (``abc``, ``-1``) is the router's 404. parse_args still checks the range."""
    return re.sub(r"{(\w+)}", r"{\1:[0-9]+}", path)


async def serve(service: LedgerService, host: str, port: int) -> None:
    """Run until cancelled (SIGINT/SIGTERM via ``web.run_app`` semantics in the CLI)."""
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("ledger listening on http://%s:%d", host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
