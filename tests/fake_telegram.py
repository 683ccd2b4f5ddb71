"""A fake Telegram Bot API server (aiohttp, 127.0.0.1) that python-telegram-bot talks to over HTTP.

It checks each method's required parameters, accepts JSON, form and multipart (uploads) bodies,
long-polls ``getUpdates`` from a queue the test fills, serves files for ``getFile``, records
everything the bot sent, and can misbehave on purpose: a global rate limit answered with 429
and ``retry_after`` (a strict sliding second), a per-chat limit, the next N sends refused with
429, chats that blocked the bot (403) or do not exist (400), and failures that look like a
network. Every attempt to send, refused or not, is logged with its status and arrival time in
``attempts``.
Tests await what they expect with ``wait_for`` — never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

BOT_USER = {"id": 424242, "is_bot": True, "first_name": "Green Points",
            "username": "GreenPointsTestBot", "can_join_groups": False,
            "can_read_all_group_messages": False, "supports_inline_queries": False}

# Bot API methods the bot uses, with the parameters Telegram requires for each.
REQUIRED: dict[str, tuple[str, ...]] = {
    "getMe": (),
    "getUpdates": (),
    "deleteWebhook": (),
    "setWebhook": ("url",),
    "sendMessage": ("chat_id", "text"),
    "sendPhoto": ("chat_id", "photo"),
    "sendDocument": ("chat_id", "document"),
    "sendVenue": ("chat_id", "latitude", "longitude", "title", "address"),
    "sendLocation": ("chat_id", "latitude", "longitude"),
    "sendChatAction": ("chat_id", "action"),
    "editMessageText": ("text",),
    "editMessageCaption": (),
    "editMessageMedia": ("media",),
    "editMessageReplyMarkup": (),
    "deleteMessage": ("chat_id", "message_id"),
    "answerCallbackQuery": ("callback_query_id",),
    "setMyCommands": ("commands",),
    "deleteMyCommands": (),
    "getFile": ("file_id",),
}
SENDS = {"sendMessage", "sendPhoto", "sendDocument", "sendVenue", "sendLocation"}
# Telegram's limits on what a bot sends, checked only in ``strict`` mode (characters counted as
# code points, as the Bot API documentation states them).
TEXT_MAX = 4096
CAPTION_MAX = 1024
ANSWER_MAX = 200
CALLBACK_DATA_MAX = 64  # bytes


@dataclass
class Sent:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    message_id: int | None = None

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")

    @property
    def markup(self) -> dict[str, Any]:
        """The reply markup as sent (inline or reply keyboard), decoded; {} when none."""
        markup = self.params.get("reply_markup")
        if isinstance(markup, str):
            markup = json.loads(markup)
        return markup if isinstance(markup, dict) else {}

    @property
    def media(self) -> dict[str, Any]:
        """``editMessageMedia``'s media object, decoded; {} for other methods."""
        media = self.params.get("media")
        if isinstance(media, str):
            media = json.loads(media)
        return media if isinstance(media, dict) else {}

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """(label, callback data) of every inline button, row by row."""
        markup = self.markup
        if not markup:
            return []
        return [
            (b["text"], b.get("callback_data", ""))
            for row in markup.get("inline_keyboard", [])
            for b in row
        ]


@dataclass
class Attempt:
    method: str
    chat_id: int | None
    status: int  # 200, or the error answered
    at: float  # time.monotonic() on arrival


@dataclass
class Misbehaviour:
    rate_limit: float | None = None  # sends per second over all chats; beyond: 429
    retry_after: int = 1
    blocked: set[int] = field(default_factory=set)  # chats answering 403
    network_failures: int = 0  # the next N sends fail like a broken connection (502)
    too_many: int = 0  # the next N sends are refused with 429 and ``retry_after``
    per_chat_rate: float | None = None  # sends per second to one chat; beyond: 429
    missing_chats: set[int] = field(default_factory=set)  # chats answering 400 "chat not found"


class FakeTelegram:
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.rejected: list[tuple[str, int]] = []  # (method, status) answered with an error
        self.misbehave = Misbehaviour()
        self.attempts: list[Attempt] = []
        self.files: dict[str, bytes] = {}
        # Off by default; when on, a call the real Bot API would refuse for its content (text
        # empty or too long, a caption or toast too long, a button without text or with bad
        # data) is answered with Telegram's 400 instead of succeeding.
        self.strict = False
        self._updates: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._update_ids = itertools.count(1)
        self.last_update_id = 0  # the newest update pushed
        self._message_ids = itertools.count(1)
        self._window: deque[float] = deque()
        self._last_to_chat: dict[int, float] = {}
        self._server: TestServer | None = None

    # --- running ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    async def start(self) -> None:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._file)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    # --- what tests use --------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> int:
        update_id = self.last_update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, **update})
        asyncio.get_running_loop().create_task(self._notify())
        return update_id

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[list[Sent]], bool], within: float = 10.0
    ) -> list[Sent]:
        """Wait until ``predicate(sent)`` holds; fails the test after ``within`` seconds."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self.sent))
        return self.sent

    async def next_to(self, chat_id: int, after: int, within: float = 10.0) -> Sent:
        """The first message to ``chat_id`` sent after the first ``after`` records."""
        def ready(sent: list[Sent]) -> bool:
            return any(s.chat_id == chat_id for s in sent[after:])

        await self.wait_for(ready, within)
        return next(s for s in self.sent[after:] if s.chat_id == chat_id)

    def to(self, chat_id: int) -> list[Sent]:
        return [s for s in self.sent if s.chat_id == chat_id]

    def store_file(self, file_id: str, content: bytes) -> None:
        self.files[file_id] = content

    # --- the API ---------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        files: dict[str, bytes] = {}
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.read()
            return (json.loads(body) if body else {}), files
        if ctype.startswith("multipart/"):
            params: dict[str, Any] = {}
            reader = await request.multipart()
            async for part in reader:
                name = part.name or ""
                if getattr(part, "filename", None):
                    files[name] = bytes(await part.read())  # type: ignore[union-attr]
                else:
                    params[name] = await part.text()  # type: ignore[union-attr]
            return params, files
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}, files

    def _error(self, method: str, status: int, description: str,
               parameters: dict[str, Any] | None = None) -> web.Response:
        self.rejected.append((method, status))
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    def _over_rate(self, now: float) -> bool:
        limit = self.misbehave.rate_limit
        if limit is None:
            return False
        while self._window and now - self._window[0] >= 1.0:
            self._window.popleft()
        if len(self._window) >= limit:
            return True
        self._window.append(now)
        return False

    def _over_chat_rate(self, chat_id: int, now: float) -> bool:
        rate = self.misbehave.per_chat_rate
        if rate is None:
            return False
        last = self._last_to_chat.get(chat_id)
        if last is not None and now - last < 1.0 / rate:
            return True
        self._last_to_chat[chat_id] = now
        return False

    def _refusal(self, method: str, params: dict[str, Any], now: float) -> web.Response | None:
        """The error a send gets instead of success, if the fake is misbehaving for it."""
        chat = params.get("chat_id")
        chat_id = int(chat) if chat is not None else None
        if chat_id is not None and chat_id in self.misbehave.blocked:
            return self._error(method, 403, "Forbidden: bot was blocked by the user")
        if method not in SENDS:
            return None
        if chat_id is not None and chat_id in self.misbehave.missing_chats:
            return self._error(method, 400, "Bad Request: chat not found")
        if self.misbehave.network_failures > 0:
            self.misbehave.network_failures -= 1
            return self._error(method, 502, "Bad Gateway")
        if self.misbehave.too_many > 0:
            self.misbehave.too_many -= 1
            return self._too_many(method)
        if (chat_id is not None and self._over_chat_rate(chat_id, now)) or self._over_rate(now):
            return self._too_many(method)
        return None

    def _too_many(self, method: str) -> web.Response:
        retry = self.misbehave.retry_after
        return self._error(method, 429, f"Too Many Requests: retry after {retry}",
                           {"retry_after": retry})

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files = await self._params(request)
        self.calls.append((method, params))
        if method not in REQUIRED:
            return self._error(method, 404, "Not Found: method not found")
        missing = [p for p in REQUIRED[method] if p not in params and p not in files]
        if method == "editMessageText" and "inline_message_id" not in params and not (
            "chat_id" in params and "message_id" in params
        ):
            missing.append("chat_id and message_id")
        if missing:
            return self._error(method, 400, f"Bad Request: {', '.join(missing)} is required")
        if method == "getUpdates":
            return await self._get_updates(params)
        problem = self._beyond_limits(method, params) if self.strict else None
        if problem is not None:
            return self._error(method, 400, f"Bad Request: {problem}")
        if method in SENDS or method.startswith("edit"):
            now = time.monotonic()
            refusal = self._refusal(method, params, now)
            if method in SENDS:
                chat = params.get("chat_id")
                self.attempts.append(Attempt(method, int(chat) if chat is not None else None,
                                             refusal.status if refusal else 200, now))
            if refusal is not None:
                async with self._changed:
                    self._changed.notify_all()
                return refusal
        result = self._result(method, params, files)
        async with self._changed:
            self._changed.notify_all()
        return web.json_response({"ok": True, "result": result})

    def _beyond_limits(self, method: str, params: dict[str, Any]) -> str | None:
        """What the real Bot API would refuse in this call's content, if anything."""
        text = params.get("text")
        if method in {"sendMessage", "editMessageText"}:
            if not str(text or "").strip():
                return "message text is empty"
            if len(str(text)) > TEXT_MAX:
                return "message is too long"
        captions = [params.get("caption"), self._decoded(params.get("media")).get("caption")]
        if any(c is not None and len(str(c)) > CAPTION_MAX for c in captions):
            return "message caption is too long"
        if method == "answerCallbackQuery" and text is not None and len(str(text)) > ANSWER_MAX:
            return "MESSAGE_TOO_LONG"
        markup = self._decoded(params.get("reply_markup"))
        for row in markup.get("inline_keyboard", []):
            for button in row:
                if not str(button.get("text") or "").strip():
                    return "BUTTON_TEXT_EMPTY"
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_MAX:
                    return "BUTTON_DATA_INVALID"
        for row in markup.get("keyboard", []):
            if not row:
                return "keyboard row is empty"
        return None

    @staticmethod
    def _decoded(value: Any) -> dict[str, Any]:
        """A JSON object parameter, whether it came as JSON or form text; {} when absent."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return {}
        return value if isinstance(value, dict) else {}

    def _result(self, method: str, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method == "getFile":
            file_id = str(params["file_id"])
            if file_id not in self.files:
                return {"file_id": file_id, "file_unique_id": file_id}
            return {"file_id": file_id, "file_unique_id": file_id,
                    "file_size": len(self.files[file_id]), "file_path": f"photos/{file_id}"}
        if method in SENDS or method.startswith("edit"):
            message_id = int(params.get("message_id") or next(self._message_ids))
            record = Sent(method, params, files, time.monotonic(), message_id)
            self.sent.append(record)
            chat_id = int(params.get("chat_id") or 0)
            message: dict[str, Any] = {
                "message_id": message_id,
                "date": int(dt.datetime.now(dt.UTC).timestamp()),
                "chat": {"id": chat_id, "type": "private"},
                "from": BOT_USER,
            }
            if "text" in params:
                message["text"] = params["text"]
            if method in {"sendPhoto", "editMessageMedia"}:
                message["photo"] = [{"file_id": f"sent{message_id}",
                                     "file_unique_id": f"sent{message_id}",
                                     "width": 512, "height": 512}]
            if "caption" in params:
                message["caption"] = params["caption"]
            return message
        return True

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and timeout > 0:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._updates)), min(timeout, 1.0)
                    )
        batch = self._updates[: int(params.get("limit") or 100)]
        return web.json_response({"ok": True, "result": batch})

    async def _file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        file_id = path.rsplit("/", 1)[-1]
        if file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")


class Person:
    """Someone writing to the bot: builds the updates Telegram would deliver."""

    def __init__(self, fake: FakeTelegram, user_id: int, name: str = "测试用户",
                 language_code: str | None = "zh-hans") -> None:
        self.fake = fake
        self.id = user_id
        self.user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": name}
        if language_code:
            self.user["language_code"] = language_code
        self._message_ids = itertools.count(1)

    def _message(self, **fields: Any) -> dict[str, Any]:
        return {
            "message_id": next(self._message_ids),
            "date": int(dt.datetime.now(dt.UTC).timestamp()),
            "chat": {"id": self.id, "type": "private", "first_name": self.user["first_name"]},
            "from": self.user,
            **fields,
        }

    def says(self, text: str) -> int:
        entities = []
        if text.startswith("/"):
            entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self.fake.push({"message": self._message(text=text, entities=entities)})

    def sends(self, **fields: Any) -> int:
        """Any other kind of message: ``sends(sticker={...})``, ``sends(voice={...})``."""
        return self.fake.push({"message": self._message(**fields)})

    def sends_sticker(self, emoji: str = "👍") -> int:
        return self.sends(sticker={
            "file_id": "sticker1", "file_unique_id": "sticker1", "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False,
            "emoji": emoji})

    def says_in_group(self, text: str, group_id: int = -100123) -> int:
        message = self._message(text=text)
        message["chat"] = {"id": group_id, "type": "supergroup", "title": "绿色生活群"}
        if text.startswith("/"):
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self.fake.push({"message": message})

    def edits(self, message_id: int, text: str) -> int:
        """An edit of a message sent earlier (Telegram's ``edited_message`` update)."""
        message = self._message(text=text)
        message["message_id"] = message_id
        message["edit_date"] = message["date"]
        return self.fake.push({"edited_message": message})

    def shares_location(self, lat: float, lon: float) -> int:
        return self.fake.push(
            {"message": self._message(location={"latitude": lat, "longitude": lon})}
        )

    def sends_photo(self, content: bytes, file_id: str = "photo1") -> int:
        self.fake.store_file(file_id, content)
        return self.fake.push({"message": self._message(photo=[{
            "file_id": file_id, "file_unique_id": file_id, "width": 640, "height": 640,
            "file_size": len(content)}])})

    def taps(self, data: str, on: Sent) -> int:
        message = {
            "message_id": on.message_id,
            "date": int(dt.datetime.now(dt.UTC).timestamp()),
            "chat": {"id": self.id, "type": "private"},
            "from": BOT_USER,
            "text": on.text or "…",
        }
        return self.fake.push({"callback_query": {
            "id": f"cq{next(self._message_ids)}", "from": self.user, "chat_instance": "ci",
            "data": data, "message": message}})

    def answered_callbacks(self) -> list[dict[str, Any]]:
        return [p for m, p in self.fake.calls if m == "answerCallbackQuery"]
