"""A fake WeChat (aiohttp, 127.0.0.1): the platform's two sides, as the bot meets them.

Inbound, it is WeChat's server: ``push`` builds a message or event, signs it (SHA-1 of the sorted
token, timestamp and nonce) and in safe mode encrypts it (AES-256-CBC as the platform documents
it), POSTs it to the bot's real endpoint, waits at most ``deadline`` seconds (5 by default) and
retries an unanswered delivery, three tries in all. Every answer is checked as WeChat would: a
passive reply must be ``success``, empty, or XML addressed back to the sender with text within
2,048 bytes (decrypted and signature-checked in safe mode). An invalid answer is recorded in
``failures``; the ``fake_wechat`` fixture fails the test when any is left.
The signing and encryption are written here from the platform's documentation, not taken from
wechatpy, so a mistake in how the bot uses wechatpy cannot hide behind the same mistake here.

Outbound, it serves the API under one base URL and records every call in ``calls``: tokens from
``stable_token`` (expiry -> 42001, rotation -> 40001, ``force_refresh`` counted), service
messages only inside the windows its own pushes opened (45015 outside, 45047 over count),
template messages with the 20-character field rule (47003), a daily quota (45009) and 43004 for
someone who unfollowed, whose
delivery result it posts back as ``TEMPLATESENDJOBFINISH``, mass sends with their quota (45028)
and ``clientmsgid`` (45065 with the first msg_id on a repeat), reported back by
``MASSSENDJOBFINISH`` counting the people following, media uploads (41005 for a non-ASCII file
name), tags, menus and QR codes.
Tests await what they expect with ``wait_for``; time passes by ``advance``, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import secrets
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ACCOUNT = "gh_greenpoints"
TEXT_MAX = 2048  # bytes
MESSAGE_WINDOW = 48 * 3600.0
MESSAGE_WINDOW_SENDS = 5
EVENT_WINDOW = 60.0
EVENT_WINDOW_SENDS = 3
WINDOW_EVENTS = {
    "subscribe",
    "SCAN",
    "CLICK",
    "scancode_push",
    "scancode_waitmsg",
    "location_select",
}


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _pad(data: bytes) -> bytes:
    n = 32 - len(data) % 32
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    return data[: -data[-1]]


class AesBox:
    """The platform's message encryption: base64(AES-256-CBC(rand16 | len | xml | appid))."""

    def __init__(self, aes_key: str, app_id: str) -> None:
        self.key = base64.b64decode(aes_key + "=")
        self.app_id = app_id

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, xml: str) -> str:
        raw = xml.encode()
        plain = os.urandom(16) + struct.pack(">I", len(raw)) + raw + self.app_id.encode()
        enc = self._cipher().encryptor()
        return base64.b64encode(enc.update(_pad(plain)) + enc.finalize()).decode()

    def decrypt(self, b64: str) -> str:
        dec = self._cipher().decryptor()
        plain = _unpad(dec.update(base64.b64decode(b64)) + dec.finalize())
        (size,) = struct.unpack(">I", plain[16:20])
        xml, app_id = plain[20 : 20 + size], plain[20 + size :]
        assert app_id.decode() == self.app_id, "reply sealed for another app id"
        return xml.decode()


def to_xml(fields: dict[str, Any]) -> str:
    parts = []
    for name, value in fields.items():
        if isinstance(value, dict):
            parts.append(f"<{name}>{to_xml(value)[5:-6]}</{name}>")
        elif isinstance(value, int | float):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            safe = str(value).replace("]]>", "]]]]><![CDATA[>")  # how CDATA carries "]]>"
            parts.append(f"<{name}><![CDATA[{safe}]]></{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


@dataclass
class Try:
    status: int | None  # None: no answer within the deadline
    body: str
    seconds: float


@dataclass
class Delivery:
    fields: dict[str, Any]
    tries: list[Try] = field(default_factory=list)
    reply: dict[str, str] | None = None  # the passive reply, decrypted and parsed

    @property
    def text(self) -> str:
        return (self.reply or {}).get("Content", "")


@dataclass
class Call:
    path: str
    params: dict[str, str]
    body: dict[str, Any]
    errcode: int
    at: float
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)


@dataclass
class Window:
    opened: float = -1e18
    sent: int = 0


@dataclass
class Person:
    message: Window = field(default_factory=Window)
    event: Window = field(default_factory=Window)
    following: bool = True


class FakeWeChat:
    def __init__(
        self,
        *,
        token: str = "faketoken1",
        app_id: str = "wx00000000000fa4e1",
        app_secret: str = "0000000000000000000000000000fa4e",
        aes_key: str | None = None,
    ) -> None:
        self.token = token
        self.app_id = app_id
        self.app_secret = app_secret
        self.aes_key = aes_key
        self.box = AesBox(aes_key, app_id) if aes_key else None
        self.bot_url = ""  # the bot's endpoint, set by the test
        self.deadline = 5.0
        self.tries = 3
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self.failures: list[str] = []
        self.people: dict[str, Person] = {}
        self.offset = 0.0  # simulated time added to the monotonic clock
        self.valid_tokens: dict[str, float] = {}  # token -> expires at (simulated)
        self.current_token = ""
        self.token_ttl = 7200.0
        self.forced_refreshes = 0
        self.template_quota = 100_000
        self.mass_quota = 100
        self.template_status = "success"
        self.mass_ids: dict[str, int] = {}
        self.mass_texts: list[str] = []  # what each accepted mass send said
        self.mass_errors = 0  # followers a mass send fails to reach (its report's ErrorCount)
        self.media: dict[str, bytes] = {}
        self.tags: dict[int, str] = {}
        self.tagged: dict[int, set[str]] = {}
        self.menus: list[dict[str, Any]] = []
        self._ids = itertools.count(1_000_000)
        self._server: TestServer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- running ------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Let simulated time pass: windows close, tokens expire."""
        self.offset += seconds

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/cgi-bin/{path:.*}", self._api)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        self._session = aiohttp.ClientSession()
        self._issue_token()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._server is not None:
            await self._server.close()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    def calls_to(self, path: str, errcode: int | None = 0) -> list[Call]:
        return [
            c for c in self.calls if c.path == path and (errcode is None or c.errcode == errcode)
        ]

    # --- inbound: deliveries to the bot ---------------------------------------------------

    def person(self, openid: str) -> Person:
        return self.people.setdefault(openid, Person())

    def _open_windows(self, fields: dict[str, Any]) -> None:
        person = self.person(str(fields["FromUserName"]))
        if fields["MsgType"] != "event":
            person.message = Window(self.now())
        elif fields.get("Event") in WINDOW_EVENTS:
            person.event = Window(self.now())
            if fields.get("Event") == "subscribe":
                person.following = True
        elif fields.get("Event") == "unsubscribe":
            person.following = False

    def signed(
        self, fields: dict[str, Any], timestamp: int | None = None
    ) -> tuple[dict[str, str], str]:
        """The query and body of one delivery; ``timestamp`` (Unix seconds) defaults to now."""
        stamp = int(time.time()) if timestamp is None else timestamp
        timestamp, nonce = str(stamp), secrets.token_hex(5)
        query = {
            "signature": sign(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": str(fields["FromUserName"]),
        }
        plain = to_xml(fields)
        if self.box is None:
            return query, plain
        encrypted = self.box.encrypt(plain)
        query |= {
            "encrypt_type": "aes",
            "msg_signature": sign(self.token, timestamp, nonce, encrypted),
        }
        return query, to_xml({"ToUserName": ACCOUNT, "Encrypt": encrypted})

    def message(self, openid: str, msg_type: str, **extra: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "ToUserName": ACCOUNT,
            "FromUserName": openid,
            "CreateTime": int(time.time()),
            "MsgType": msg_type,
        }
        if msg_type != "event":
            fields["MsgId"] = next(self._ids) * 1_000_003
        fields.update(extra)
        return fields

    def text(self, openid: str, content: str, **extra: Any) -> dict[str, Any]:
        return self.message(openid, "text", Content=content, **extra)

    def event(self, openid: str, event: str, **extra: Any) -> dict[str, Any]:
        return self.message(openid, "event", Event=event, **extra)

    async def push(self, fields: dict[str, Any], *, always_retry: bool = False) -> Delivery:
        """Deliver as WeChat does: retry while unanswered, three tries in all. With
        ``always_retry`` all three identical tries are sent even when answered (what a lost
        answer looks like from our side)."""
        assert self._session is not None and self.bot_url
        self._open_windows(fields)
        delivery = Delivery(fields)
        self.deliveries.append(delivery)
        query, body = self.signed(fields)  # retries are byte-identical
        for _ in range(self.tries):
            started = time.monotonic()
            try:
                async with (
                    asyncio.timeout(self.deadline),
                    self._session.post(self.bot_url, params=query, data=body.encode()) as response,
                ):
                    answer = await response.text()
                    delivery.tries.append(Try(response.status, answer, time.monotonic() - started))
            except TimeoutError:
                delivery.tries.append(Try(None, "", time.monotonic() - started))
                continue
            if response.status != 200:
                self.failures.append(f"HTTP {response.status} for {fields['MsgType']}")
                continue
            ok = self._check_answer(delivery, answer)
            if ok and not always_retry:
                break
        await self._notify()
        return delivery

    def _check_answer(self, delivery: Delivery, answer: str) -> bool:
        if answer in {"", "success"}:
            return True
        try:
            root = ET.fromstring(answer)
            if self.box is not None:
                encrypted = root.findtext("Encrypt") or ""
                timestamp, nonce = root.findtext("TimeStamp") or "", root.findtext("Nonce") or ""
                if root.findtext("MsgSignature") != sign(self.token, timestamp, nonce, encrypted):
                    raise AssertionError("reply MsgSignature does not match")
                root = ET.fromstring(self.box.decrypt(encrypted))
            reply = {child.tag: (child.text or "") for child in root}
            for child in root:
                for grand in child:
                    reply[f"{child.tag}.{grand.tag}"] = grand.text or ""
            if reply.get("ToUserName") != delivery.fields["FromUserName"]:
                raise AssertionError("reply not addressed to the sender")
            if reply.get("FromUserName") != delivery.fields["ToUserName"]:
                raise AssertionError("reply not from the account")
            if reply.get("MsgType") == "text" and len(reply.get("Content", "").encode()) > TEXT_MAX:
                raise AssertionError("reply text over 2,048 bytes")
            if reply.get("MsgType") not in {"text", "image"}:
                raise AssertionError(f"unexpected reply type {reply.get('MsgType')}")
        except (ET.ParseError, AssertionError, ValueError) as exc:
            self.failures.append(f"invalid passive reply: {exc}: {answer[:200]!r}")
            return False
        delivery.reply = reply
        return True

    # --- outbound: the API ----------------------------------------------------------------

    def _issue_token(self) -> str:
        self.current_token = "TOKEN-" + secrets.token_hex(8)
        self.valid_tokens[self.current_token] = self.now() + self.token_ttl
        return self.current_token

    def expire_token(self) -> None:
        """The current token expires now (next use: 42001)."""
        self.valid_tokens[self.current_token] = self.now() - 1

    def rotate_token(self) -> None:
        """Someone force-refreshed: the old token is invalid (40001), a new one is current."""
        old = self.current_token
        self._issue_token()
        del self.valid_tokens[old]

    async def _media_get(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        error = self._token_error(params.get("access_token", ""))
        content = self.media.get(params.get("media_id", ""))
        if not error and content is None:
            error = 40007
        self.calls.append(Call("/cgi-bin/media/get", params, {}, error, self.now()))
        if error:
            return web.json_response({"errcode": error, "errmsg": "refused"})
        return web.Response(body=content, content_type="image/jpeg")

    def _token_error(self, token: str) -> int:
        if token not in self.valid_tokens:
            return 40001
        if self.valid_tokens[token] <= self.now():
            return 42001
        return 0

    async def _api(self, request: web.Request) -> web.Response:
        path = "/cgi-bin/" + request.match_info["path"]
        params = dict(request.query)
        files: dict[str, tuple[str, bytes]] = {}
        body: dict[str, Any] = {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, aiohttp.BodyPartReader):
                    files[part.name or ""] = (part.filename or "", bytes(await part.read()))
        else:
            raw = await request.read()
            body = json.loads(raw) if raw else {}
        answer = self._answer(path, params, body, files)
        errcode = int(answer.get("errcode", 0))
        self.calls.append(Call(path, params, body, errcode, self.now(), files))
        await self._notify()
        return web.json_response(answer, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    def _answer(
        self,
        path: str,
        params: dict[str, str],
        body: dict[str, Any],
        files: dict[str, tuple[str, bytes]],
    ) -> dict[str, Any]:
        if path == "/cgi-bin/stable_token":
            if (body.get("appid"), body.get("secret")) != (self.app_id, self.app_secret):
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            if body.get("force_refresh"):
                self.forced_refreshes += 1
                self.rotate_token()
            elif self.valid_tokens.get(self.current_token, 0) <= self.now():
                self.valid_tokens.pop(self.current_token, None)
                self._issue_token()
            left = int(self.valid_tokens[self.current_token] - self.now())
            return {"access_token": self.current_token, "expires_in": left}
        error = self._token_error(params.get("access_token", ""))
        if error:
            return {"errcode": error, "errmsg": "access_token invalid or expired"}
        handler = {
            "/cgi-bin/message/custom/send": self._custom_send,
            "/cgi-bin/message/template/send": self._template_send,
            "/cgi-bin/media/upload": lambda b: self._upload(params, files),
            "/cgi-bin/message/mass/sendall": self._mass_send,
            "/cgi-bin/tags/create": self._tag_create,
            "/cgi-bin/tags/members/batchtagging": self._tagging,
            "/cgi-bin/tags/members/batchuntagging": lambda b: self._tagging(b, add=False),
            "/cgi-bin/menu/addconditional": self._menu,
            "/cgi-bin/qrcode/create": self._qrcode,
        }.get(path)
        if handler is None:
            return {"errcode": 40066, "errmsg": "invalid url"}
        return handler(body)

    def _custom_send(self, body: dict[str, Any]) -> dict[str, Any]:
        person = self.people.get(str(body.get("touser")))
        if person is None or not person.following:
            return {"errcode": 45015, "errmsg": "response out of time limit"}
        if body.get("msgtype") == "text":
            if len(str(body["text"]["content"]).encode()) > TEXT_MAX:
                return {"errcode": 45002, "errmsg": "content size out of limit"}
        elif body.get("msgtype") == "image":
            if body["image"]["media_id"] not in self.media:
                return {"errcode": 40007, "errmsg": "invalid media_id"}
        else:
            return {"errcode": 40008, "errmsg": "invalid message type"}
        now = self.now()
        open_windows = [
            (w, limit)
            for w, span, limit in (
                (person.event, EVENT_WINDOW, EVENT_WINDOW_SENDS),
                (person.message, MESSAGE_WINDOW, MESSAGE_WINDOW_SENDS),
            )
            if now - w.opened < span
        ]
        if not open_windows:
            return {"errcode": 45015, "errmsg": "response out of time limit"}
        for window, limit in open_windows:
            if window.sent < limit:
                window.sent += 1
                return {"errcode": 0, "errmsg": "ok"}
        return {"errcode": 45047, "errmsg": "out of response count limit"}

    def _template_send(self, body: dict[str, Any]) -> dict[str, Any]:
        person = self.people.get(str(body.get("touser")))
        if person is not None and not person.following:
            return {"errcode": 43004, "errmsg": "require subscribe"}
        for name, item in (body.get("data") or {}).items():
            value = str(item.get("value", ""))
            if len(value) > 20 or "\n" in value or any(ord(ch) >= 0x1F000 for ch in value):
                return {"errcode": 47003, "errmsg": f"argument invalid! data.{name}.value"}
        if self.template_quota <= 0:
            return {"errcode": 45009, "errmsg": "reach max api daily quota limit"}
        self.template_quota -= 1
        msg_id = next(self._ids)
        finish = self.event(
            str(body["touser"]), "TEMPLATESENDJOBFINISH", MsgID=msg_id, Status=self.template_status
        )
        task = asyncio.ensure_future(self.push(finish))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {"errcode": 0, "errmsg": "ok", "msgid": msg_id}

    def _upload(
        self, params: dict[str, str], files: dict[str, tuple[str, bytes]]
    ) -> dict[str, Any]:
        if params.get("type") != "image" or "media" not in files:
            return {"errcode": 40004, "errmsg": "invalid media type"}
        filename, content = files["media"]
        if not filename.isascii():
            return {"errcode": 41005, "errmsg": "media data missing"}
        if len(content) > 2 * 1024 * 1024:
            return {"errcode": 40009, "errmsg": "invalid image size"}
        media_id = "MEDIA-" + secrets.token_hex(8)
        self.media[media_id] = content
        return {"type": "image", "media_id": media_id, "created_at": int(time.time())}

    def _mass_send(self, body: dict[str, Any]) -> dict[str, Any]:
        client_id = str(body.get("clientmsgid") or "")
        if client_id and client_id in self.mass_ids:
            return {
                "errcode": 45065,
                "errmsg": "clientmsgid exist",
                "msg_id": self.mass_ids[client_id],
            }
        if self.mass_quota <= 0:
            return {"errcode": 45028, "errmsg": "has no masssend quota"}
        self.mass_quota -= 1
        msg_id = next(self._ids)
        if client_id:
            self.mass_ids[client_id] = msg_id
        self.mass_texts.append(str((body.get("text") or {}).get("content", "")))
        following = sum(
            1 for openid, p in self.people.items() if p.following and openid != ACCOUNT
        )
        finish = self.event(
            ACCOUNT,  # the report comes from the platform, about no one follower
            "MASSSENDJOBFINISH",
            MsgID=msg_id,
            Status="send success",
            TotalCount=following,
            FilterCount=following,
            SentCount=following - self.mass_errors,
            ErrorCount=self.mass_errors,
        )
        task = asyncio.ensure_future(self.push(finish))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {"errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id}

    def _tag_create(self, body: dict[str, Any]) -> dict[str, Any]:
        tag_id = 100 + len(self.tags)
        self.tags[tag_id] = str(body["tag"]["name"])
        return {"tag": {"id": tag_id, "name": self.tags[tag_id]}}

    def _tagging(self, body: dict[str, Any], *, add: bool = True) -> dict[str, Any]:
        tag_id = int(body["tagid"])
        if tag_id not in self.tags:
            return {"errcode": 45159, "errmsg": "invalid tag"}
        people = self.tagged.setdefault(tag_id, set())
        (people.update if add else people.difference_update)(body["openid_list"])
        return {"errcode": 0, "errmsg": "ok"}

    def tags_of(self, openid: str) -> list[str]:
        """The names of the tags ``openid`` carries, in tag id order."""
        return [self.tags[t] for t in sorted(self.tagged) if openid in self.tagged[t]]

    def _menu(self, body: dict[str, Any]) -> dict[str, Any]:
        if set(body.get("matchrule", {})) != {"tag_id"}:
            return {"errcode": 65320, "errmsg": "invalid matchrule: tag_id only"}
        self.menus.append(body)
        return {"menuid": str(next(self._ids))}

    def _qrcode(self, body: dict[str, Any]) -> dict[str, Any]:
        scene = str(body.get("action_info", {}).get("scene", {}).get("scene_str", ""))
        if not 1 <= len(scene) <= 64:
            return {"errcode": 40053, "errmsg": "invalid scene"}
        ticket = "TICKET-" + secrets.token_hex(8)
        return {
            "ticket": ticket,
            "url": f"http://weixin.qq.com/q/{scene}",
            "expire_seconds": body.get("expire_seconds", 0),
        }


@contextlib.asynccontextmanager
async def running_fake(**kwargs: Any) -> Any:
    fake = FakeWeChat(**kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
