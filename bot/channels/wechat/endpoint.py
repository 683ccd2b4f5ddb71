"""The /wechat endpoint (aiohttp): URL verification, deliveries, the 5-second deadline.

WeChat waits 5 s for an answer, then drops it and retries, three tries in all (WECHAT.md rule 1).
So the handler runs against a deadline (default 4.5 s from arrival): a reply ready in time goes
back passively (no quota); otherwise we answer ``success`` and the reply follows as
customer-service messages, which the person's own message has just allowed. Every delivery is
claimed once in the shared database, so a retry that reaches another process does not run the
handler again; it gets the first one's passive reply when there is one, else ``success``.
A correctly signed delivery whose timestamp is outside the freshness window (inbound.py) is
refused 403 too, so a captured request replayed after its dedupe row was purged cannot run twice.
Answers are 200, 400 (unreadable), 403 (bad signature, stale) or 413 (too large), never 5xx: a 5xx
only makes WeChat retry something that will fail the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.channels.wechat import store
from bot.channels.wechat.inbound import (
    BadRequest,
    BadSignature,
    Inbound,
    InboundCodec,
    Stale,
    image_reply,
    text_reply,
)
from bot.storage.db import BotDatabase

log = logging.getLogger(__name__)

PATH = "/wechat"
MAX_BODY = 64 * 1024  # bytes; real deliveries are a few hundred
SUCCESS = "success"
# What opens a customer-service window (rule 2): a person's message, or these events.
WINDOW_EVENTS = frozenset(
    {
        "subscribe",
        "subscribe_scan",
        "scan",
        "click",
        "scancode_push",
        "scancode_waitmsg",
        "location_select",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
    }
)


@dataclass(frozen=True)
class OutText:
    """Text already within 2,048 UTF-8 bytes (see render.py)."""

    text: str


@dataclass(frozen=True)
class OutImage:
    """A picture uploaded as temporary media (no caption on WeChat: rule 10)."""

    media_id: str


Outgoing = OutText | OutImage
Handler = Callable[[Inbound], Awaitable[Sequence[Outgoing]]]
# Sends what missed the passive reply as customer-service messages (outbound.py).
Later = Callable[[str, Sequence[Outgoing]], Awaitable[None]]


def _passive(inbound: Inbound, out: Outgoing) -> str:
    if isinstance(out, OutText):
        return text_reply(inbound, out.text)
    return image_reply(inbound, out.media_id)


class WeChatEndpoint:
    """``handle`` turns one delivery into replies; ``later`` sends what the passive reply
    could not carry (a passive reply is one message). ``deadline`` in seconds."""

    def __init__(
        self,
        codec: InboundCodec,
        db: BotDatabase,
        handle: Handler,
        later: Later,
        *,
        deadline: float = 4.5,
    ) -> None:
        self.codec = codec
        self.db = db
        self.handle = handle
        self.later = later
        self.deadline = deadline
        self._tasks: set[asyncio.Future[Any]] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.get)
        app.router.add_post(PATH, self.post)

    async def get(self, request: web.Request) -> web.Response:
        try:
            echo = self.codec.verify_url(request.query)
        except BadSignature:
            return web.Response(status=403, text="bad signature")
        return web.Response(text=echo)

    async def post(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="too large")
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return web.Response(status=413, text="too large")
        try:
            inbound = self.codec.open(request.query, body)
        except Stale as exc:
            log.warning("wechat: refused a stale delivery: %s", exc)
            return web.Response(status=403, text="stale")
        except BadSignature:
            return web.Response(status=403, text="bad signature")
        except BadRequest as exc:
            log.info("wechat: refused a delivery: %s", exc)
            return web.Response(status=400, text="bad request")
        try:
            answer = await self._answer(inbound, started)
        except Exception:  # never a 5xx: WeChat would retry what fails the same way
            log.exception("wechat: delivery %s failed", inbound.key[:12])
            answer = SUCCESS
        return web.Response(
            text=answer, content_type="application/xml" if answer != SUCCESS else "text/plain"
        )

    async def _answer(self, inbound: Inbound, started: float) -> str:
        if inbound.msg_type == "event" and inbound.event == "templatesendjobfinish":
            # Bursts of these arrive (rule 3): record and answer at once, no dedupe needed
            # since recording a status twice is harmless.
            msg_id = int(inbound.fields.get("MsgID") or 0)
            await store.record_template_result(
                self.db, msg_id, inbound.openid, str(inbound.fields.get("Status") or "")
            )
            return SUCCESS
        if inbound.msg_type == "event" and inbound.event == "masssendjobfinish":
            # A mass send's report (people reached, failed): kept for the admin's progress
            # (bot.outbox.mass_sends); as above, recording it twice is harmless.
            msg_id = int(inbound.fields.get("MsgID") or 0)
            if not await store.record_mass_result(self.db, msg_id, inbound.fields):
                log.info("wechat: a mass send report for msg_id %s that is not ours", msg_id)
            return SUCCESS
        window: store.WindowChange | None = None
        if inbound.msg_type != "event":
            window = "message"
        elif inbound.event in WINDOW_EVENTS:
            window = "event"
        elif inbound.event == "unsubscribe":
            window = "unfollow"
        claim = await store.claim_delivery(
            self.db, inbound.key, inbound.openid, window, with_choices=inbound.msg_type == "text"
        )
        if not claim.first:
            return self.codec.seal(claim.reply) if claim.reply else SUCCESS
        if claim.choices is not None:
            inbound = dataclasses.replace(inbound, choices=claim.choices)
        # Once claimed, the delivery is ours to finish even if WeChat hangs up (servers
        # that cancel handlers on disconnect would otherwise lose it): shield the work.
        work = asyncio.ensure_future(self._process(inbound, started))
        self._tasks.add(work)
        work.add_done_callback(self._tasks.discard)
        return await asyncio.shield(work)

    async def _process(self, inbound: Inbound, started: float) -> str:
        task = asyncio.ensure_future(self.handle(inbound))
        remaining = self.deadline - (time.monotonic() - started)
        done, _ = await asyncio.wait({task}, timeout=max(remaining, 0.0))
        if not done:
            self._spawn(self._finish_late(inbound, task))
            return SUCCESS
        try:
            outs = list(task.result())
        except Exception:
            log.exception("wechat: handler failed on %s", inbound.key[:12])
            await store.finish_delivery(self.db, inbound.key, None)
            return SUCCESS
        reply = _passive(inbound, outs[0]) if outs else None
        if not await store.finish_delivery(self.db, inbound.key, reply):
            # WeChat retried meanwhile, so it no longer waits for this answer.
            if outs:
                self._spawn(self.later(inbound.openid, outs))
            return SUCCESS
        if len(outs) > 1:
            self._spawn(self.later(inbound.openid, outs[1:]))
        return self.codec.seal(reply) if reply else SUCCESS

    async def _finish_late(
        self, inbound: Inbound, task: asyncio.Future[Sequence[Outgoing]]
    ) -> None:
        try:
            outs = list(await task)
        except Exception:
            log.exception("wechat: handler failed late on %s", inbound.key[:12])
            outs = []
        await store.finish_delivery(self.db, inbound.key, None)
        if outs:
            await self.later(inbound.openid, outs)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("wechat: background send failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for late replies still being sent (on shutdown, and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
