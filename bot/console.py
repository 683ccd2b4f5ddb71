"""``greenpoints demo``: the same bot, handlers and texts, in a terminal — no token, no network.

The application is the production one; only its Bot API is replaced by ``ConsoleBotApi``, which
answers API calls in-process and prints what the bot says. Lines typed (or piped) become
updates; lines starting with ``:`` are console actions (send a location, tap a button, …).
The embedded ledger is seeded with the Lin'an demo alliance on first run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import itertools
import json
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from telegram import Update
from telegram._utils.defaultvalue import DEFAULT_NONE
from telegram._utils.types import ODVInput
from telegram.request import BaseRequest, RequestData

from bot import qr, scan
from bot.app import build_application, halt, launch
from bot.config import SettingsError, load_settings
from bot.context import App
from bot.runtime import background_hooks, close_services, open_services
from ledger_client.embedded import demo_setup

API_URL = "http://console.invalid"
TOKEN = "0:console"
BOT = {"id": 1, "is_bot": True, "first_name": "绿色消费积分", "username": "GreenPointsDemoBot"}
HELP = """console actions:
  /start /balance /nearby /qr /language /settings /help   talk to the bot as usual
  :location LAT LON     share a location (:location alone: next to the demo shop)
  :tap N                press button N of the last message that had buttons
  :photo PATH           send a picture (merchant staff: a photo of a customer's QR)
  :staff                become a cashier of the demo shop (opens a staff invite link)
  :scan                 scan the last QR code shown, as a cashier's phone camera would
  :buy YUAN             the demo shop records a purchase of yours (points notice follows)
  :release              run today's voucher release (voucher notices follow)
  :help                 this list
  :quit                 leave (end of input does the same)"""


class ConsoleBotApi(BaseRequest):
    """A Bot API in this process: answers calls, prints the bot's side of the conversation."""

    def __init__(self, out: TextIO, files_dir: Path) -> None:
        self.out = out
        self.files_dir = files_dir
        self._ids = itertools.count(1000)
        self.buttons: list[tuple[str, str, dict[str, Any]]] = []  # label, data, message
        self.uploads: dict[str, Path] = {}
        self.last_picture: bytes | None = None  # what ``:scan`` points the camera at

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def initialize(self) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)

    async def shutdown(self) -> None:
        return None

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _message(self, chat_id: Any, **fields: Any) -> dict[str, Any]:
        return {
            "message_id": next(self._ids),
            "date": int(dt.datetime.now(dt.UTC).timestamp()),
            "chat": {"id": int(chat_id), "type": "private"},
            "from": BOT,
            **fields,
        }

    def _show_keyboard(self, markup: Any, message: dict[str, Any]) -> None:
        if isinstance(markup, str):
            markup = json.loads(markup)
        if not isinstance(markup, dict):
            return
        if "inline_keyboard" in markup:
            self.buttons = []
            rows = []
            for row in markup["inline_keyboard"]:
                cells = []
                for button in row:
                    self.buttons.append((button["text"], button.get("callback_data", ""), message))
                    cells.append(f"[{len(self.buttons)} {button['text']}]")
                rows.append(" ".join(cells))
            self.say("   " + "\n   ".join(rows))
        elif "keyboard" in markup:
            labels = [
                b["text"] if isinstance(b, dict) else str(b) for r in markup["keyboard"] for b in r
            ]
            self.say("   ⌨ " + " | ".join(labels) + "   (:location sends one)")

    def _photo(self, files: dict[str, Any], name: str) -> Path | None:
        part = files.get(name)
        if part is None:
            return None
        content = part[1] if isinstance(part, tuple) else part
        data = content if isinstance(content, bytes) else content.read()
        path = self.files_dir / f"qr-{uuid.uuid4().hex[:8]}.png"
        path.write_bytes(data)
        self.last_picture = data
        with contextlib.suppress(ValueError):
            self.say(qr.terminal_from_png(data))
        self.say(f"   (picture saved to {path})")
        return path

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = DEFAULT_NONE,
        write_timeout: ODVInput[float] = DEFAULT_NONE,
        connect_timeout: ODVInput[float] = DEFAULT_NONE,
        pool_timeout: ODVInput[float] = DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if "/file/bot" in url:
            path = self.uploads.get(url.rsplit("/", 1)[-1])
            return (200, path.read_bytes()) if path else (404, b"")
        endpoint = url.rsplit("/", 1)[-1]
        params: dict[str, Any] = dict(request_data.parameters) if request_data else {}
        files = request_data.multipart_data if request_data else {}
        result = self._answer(endpoint, params, files)
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def _answer(self, endpoint: str, p: dict[str, Any], files: dict[str, Any]) -> Any:
        chat_id = p.get("chat_id", 0)
        if endpoint == "getMe":
            return BOT
        if endpoint == "sendMessage":
            message = self._message(chat_id, text=p.get("text", ""))
            self.say(f"🤖 {p.get('text', '')}".replace("\n", "\n   "))
            self._show_keyboard(p.get("reply_markup"), message)
            return message
        if endpoint == "sendPhoto":
            self._photo(files, "photo")
            caption = p.get("caption", "")
            self.say(f"🤖 {caption}".replace("\n", "\n   "))
            message = self._message(
                chat_id,
                caption=caption,
                photo=[{"file_id": "qr", "file_unique_id": "qr", "width": 1, "height": 1}],
            )
            self._show_keyboard(p.get("reply_markup"), message)
            return message
        if endpoint in {"editMessageText", "editMessageCaption", "editMessageMedia"}:
            media = p.get("media")
            if isinstance(media, str):
                media = json.loads(media)
            if isinstance(media, dict):
                attach = str(media.get("media", "")).removeprefix("attach://")
                self._photo(files, attach)
            text = p.get("text") or p.get("caption") or (media or {}).get("caption", "")
            self.say(f"🤖 (edited) {text}".replace("\n", "\n   "))
            message = self._message(chat_id or 0, text=text)
            self._show_keyboard(p.get("reply_markup"), message)
            return message
        if endpoint == "editMessageReplyMarkup":
            message = self._message(chat_id or 0, text="")
            self._show_keyboard(p.get("reply_markup"), message)
            return message
        if endpoint == "answerCallbackQuery":
            if p.get("text"):
                self.say(f"   💬 {p['text']}")
            return True
        if endpoint == "sendVenue":
            self.say(
                f"🤖 📍 {p.get('title')} — {p.get('address')}\n   "
                f"https://uri.amap.com/marker?position={p.get('longitude')},"
                f"{p.get('latitude')}"
            )
            return self._message(
                chat_id,
                venue={
                    "location": {"latitude": p.get("latitude"), "longitude": p.get("longitude")},
                    "title": p.get("title"),
                    "address": p.get("address"),
                },
            )
        if endpoint == "getFile":
            return {
                "file_id": p.get("file_id"),
                "file_unique_id": p.get("file_id"),
                "file_path": p.get("file_id"),
            }
        return True  # setMyCommands, deleteMyCommands, sendChatAction, …


class Person:
    """The demo consumer at the keyboard, turning lines into Telegram updates."""

    def __init__(self, chat_id: int = 10001, name: str = "陈小绿", language: str = "zh-hans"):
        self.user = {"id": chat_id, "is_bot": False, "first_name": name, "language_code": language}
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)

    def _update(self, **fields: Any) -> dict[str, Any]:
        return {"update_id": next(self._update_ids), **fields}

    def message(self, **fields: Any) -> dict[str, Any]:
        return self._update(
            message={
                "message_id": next(self._message_ids),
                "date": int(dt.datetime.now(dt.UTC).timestamp()),
                "chat": {
                    "id": self.user["id"],
                    "type": "private",
                    "first_name": self.user["first_name"],
                },
                "from": self.user,
                **fields,
            }
        )

    def text(self, text: str) -> dict[str, Any]:
        entities = []
        if text.startswith("/"):
            length = len(text.split()[0])
            entities = [{"type": "bot_command", "offset": 0, "length": length}]
        return self.message(text=text, entities=entities)

    def tap(self, data: str, message: dict[str, Any]) -> dict[str, Any]:
        return self._update(
            callback_query={
                "id": str(next(self._update_ids)),
                "from": self.user,
                "chat_instance": "console",
                "data": data,
                "message": message,
            }
        )


class Console:
    def __init__(self, app: App, api: ConsoleBotApi, person: Person, setup: Any) -> None:
        self.app, self.api, self.person, self.setup = app, api, person, setup

    async def send(self, update: dict[str, Any]) -> None:
        await self.app.process_update(Update.de_json(update, self.app.bot))
        await self.settle()

    async def settle(self) -> None:
        """Let notices caused by the last step arrive before the next prompt."""
        from bot import background

        await background.settle(self.app)

    async def handle(self, line: str) -> bool:
        """One line of input; False when the person wants to leave."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith(":"):
            await self.send(self.person.text(line))
            return True
        action, *args = line[1:].split()
        if action in {"quit", "q", "exit"}:
            return False
        if action == "help":
            self.api.say(HELP)
        elif action == "location":
            lat, lon = (float(args[0]), float(args[1])) if len(args) == 2 else self.setup.spot
            await self.send(self.person.message(location={"latitude": lat, "longitude": lon}))
        elif action == "tap" and args and args[0].isdigit():
            n = int(args[0])
            if not 1 <= n <= len(self.api.buttons):
                self.api.say("   (no such button)")
                return True
            _label, data, message = self.api.buttons[n - 1]
            await self.send(self.person.tap(data, message))
        elif action == "photo" and args:
            path = _existing_file(" ".join(args))
            if path is None:
                self.api.say(f"   (no such file: {' '.join(args)})")
                return True
            file_id = f"upload-{uuid.uuid4().hex[:8]}"
            self.api.uploads[file_id] = path
            await self.send(
                self.person.message(
                    photo=[
                        {
                            "file_id": file_id,
                            "file_unique_id": file_id,
                            "width": 512,
                            "height": 512,
                            "file_size": path.stat().st_size,
                        }
                    ]
                )
            )
        elif action == "staff":
            await self.send(self.person.text(f"/start {await self.setup.staff_invite()}"))
        elif action == "scan":
            payload = await self._scan()
            if payload is None:
                self.api.say("   (no QR code on screen to scan; /qr shows one)")
                return True
            await self.send(self.person.text(f"/start {payload}"))
        elif action == "buy" and args:
            await self.setup.buy(self.person.user["id"], args[0])
            await self.settle()
        elif action == "release":
            await self.setup.release()
            await self.settle()
        else:
            self.api.say("   (unknown action; :help lists them)")
        return True

    async def _scan(self) -> str | None:
        """The deep-link payload in the last picture the bot showed, read from its pixels."""
        picture = self.api.last_picture
        if picture is None:
            return None
        for text in await scan.read_qr(picture):
            payload = scan.start_payload(text)
            if payload:
                return payload
        return None


def _existing_file(text: str) -> Path | None:
    path = Path(text).expanduser()
    return path if path.is_file() else None


def demo_home() -> Path:
    home = Path(os.environ.get("GREENPOINTS_DEMO_DIR", "greenpoints-demo")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


async def run(home: Path, stdin: TextIO, stdout: TextIO) -> int:
    os.environ.setdefault("GREENPOINTS_LEDGER_URL", f"sqlite:///{home / 'ledger.db'}")
    os.environ.setdefault("GREENPOINTS_DATABASE_URL", f"sqlite:///{home / 'bot.db'}")
    try:
        settings = load_settings(
            rate_overall=1000.0, rate_per_chat=1000.0, event_poll_seconds=3600.0
        )
    except SettingsError as exc:
        print(f"greenpoints demo: {exc}", file=sys.stderr)
        return 2
    if settings.remote_ledger:
        print(
            "greenpoints demo: the demo runs the ledger in-process; unset "
            "GREENPOINTS_LEDGER_URL or point it at a database",
            file=sys.stderr,
        )
        return 2
    services = await open_services(settings, channel="console")
    person = Person()
    setup = await demo_setup(services.ledger, str(person.user["id"]))
    api = ConsoleBotApi(stdout, home / "pictures")
    starters, stoppers = background_hooks(services)
    app = build_application(
        services, TOKEN, api_url=API_URL, request=api, on_start=starters, on_stop=stoppers
    )
    interactive = stdin.isatty()
    try:
        async with app:
            await launch(app)
            console = Console(app, api, person, setup)
            api.say(f"Green Points demo — data in {home}\n{HELP}\n")
            await console.handle("/start")
            loop = asyncio.get_running_loop()
            while True:
                if interactive:
                    stdout.write("> ")
                    stdout.flush()
                line = await loop.run_in_executor(None, stdin.readline)
                if not line:
                    break
                if not interactive:
                    api.say(f"> {line.rstrip()}")
                try:
                    if not await console.handle(line):
                        break
                except (ValueError, IndexError) as exc:
                    api.say(f"   (could not do that: {exc})")
            await halt(app)
    finally:
        await setup.close()
        await close_services(services)
    return 0


def main(argv: Sequence[str] = ()) -> int:
    if argv:
        print(f"greenpoints demo takes no arguments\n\n{HELP}", file=sys.stderr)
        return 2
    stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    try:
        return asyncio.run(run(demo_home(), sys.stdin, stdout))
    except KeyboardInterrupt:
        return 130
