"""``greenpoints demo --channel wechat``: what a WeChat follower gets, in a terminal (issue 10) —
offline, no account, no token, the ledger and bot database in embedded SQLite.

The same features as every channel, rendered by the WeChat channel's own code (``adapter.render``,
``render.page_text``): each message within 2,048 bytes is one bubble (a long reply shows as
several, numbered); menu-link choices (``weixin://bizmsgmenu``) are shown as ``[N label]`` and
``:tap N`` taps one, or typing the label does, as on a phone where the link's id went missing; a
picture comes without a caption (its words follow as a message of their own); notices arrive as
template messages with their structured fields. Phone actions are console actions: ``:scan`` is
the cashier's menu scanner pointed at the last code shown, ``:staff`` scans a staff invite's
parametric QR code, ``:location`` picks a place with the menu's location picker.
"""

from __future__ import annotations

import contextlib
import re
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bot.channels.console.channel import ConsoleChannel
from bot.channels.console.demo import Console, converse, in_terminal, open_demo
from bot.channels.console.screen import Screen
from bot.channels.wechat.adapter import CHANNEL, render
from bot.channels.wechat.endpoint import OutImage, OutText
from bot.channels.wechat.notices import template_data
from bot.channels.wechat.render import TEXT_LIMIT
from bot.chat.events import Choice, Event, Follow, Person, Scan
from bot.chat.replies import ChoiceButton, Notice, Reply
from bot.features import neutral_router
from bot.media import qr, scan
from bot.outbox.event_reader import NOTICE_METHOD, EventReader
from bot.services import close_services
from bot.storage import outbox
from bot.storage.chats import utcnow
from bot.storage.outbox import Claimed, Outcome
from ledger_client.embedded import DemoSetup, demo_setup
from ledger_client.errors import LedgerClientError

OPENID = "o_demo_chen_xiaolv"  # the demo follower (openids are 28 characters of this kind)
_MENU_LINK = re.compile(
    r'<a href="weixin://bizmsgmenu\?msgmenucontent=([^"&]*)(?:&msgmenuid=([^"]*))?">[^<]*</a>'
)
_LINK = re.compile(r'<a href="([^"]*)">([^<]*)</a>')

HELP = """WeChat demo — what a follower of the account sees:
  each 🟢 bubble is one WeChat message (at most 2,048 bytes); [N label] is a menu link
  /balance /qr /nearby /language /settings /help   the account's menu buttons
  :tap N                tap menu link N of the last message that had links (or type its label)
  :location LAT LON     pick a place with the menu's location picker (alone: by the demo shop)
  :photo PATH           send a picture (a cashier: a photo of a customer's code)
  :staff                scan a staff invite's QR code with WeChat (the shop's first: its owner)
  :scan                 the cashier menu's 扫码核销 scanner, pointed at the last code shown
  :buy YUAN             the demo shop records a purchase of yours (a template notice follows)
  :release              run today's voucher release (template notices follow)
  :help                 this list
  :quit                 leave (end of input does the same)"""


class WeChatScreen(Screen):
    """Prints WeChat messages: pages as bubbles, menu links numbered, pictures saved."""

    def __init__(self, out: TextIO, pictures: Path) -> None:
        super().__init__(out, pictures)
        self.by_label: dict[str, str] = {}  # the chat's label -> choice map (render.py)

    def _upload(self, png: bytes) -> str:
        """Stands in for the media upload: the picture is saved and its path is the id."""
        self.pictures.mkdir(parents=True, exist_ok=True)
        path = self.pictures / f"wechat-{uuid.uuid4().hex[:8]}.png"
        path.write_bytes(png)
        self.last_picture = png
        return str(path)

    def _links(self, text: str) -> str:
        """Menu links become ``[N label]`` (numbered for ``:tap``), other links ``label <url>``."""

        def menu(match: re.Match[str]) -> str:
            label, choice_id = match.group(1), match.group(2)
            self.choices.append(ChoiceButton(label, choice_id or self.by_label.get(label, "")))
            return f"[{len(self.choices)} {label}]"

        text = _MENU_LINK.sub(menu, text)
        return _LINK.sub(lambda m: f"{m.group(2)} <{m.group(1)}>", text)

    async def show_wechat(self, replies: Sequence[Reply]) -> None:
        async def upload(png: bytes, _name: str) -> str:
            return self._upload(png)

        rendered = await render(replies, upload)
        if rendered.choices:
            self.by_label = dict(rendered.choices)
            self.choices = []
        pages = [o for o in rendered.outs if isinstance(o, OutText)]
        page = 0
        for out in rendered.outs:
            if isinstance(out, OutImage):
                self.say(f"🟢 [picture, no caption] saved to {out.media_id}")
                if self.last_picture is not None:
                    with contextlib.suppress(ValueError):
                        self.say(qr.terminal_from_png(self.last_picture))
                continue
            page += 1
            size = len(out.text.encode())
            assert size <= TEXT_LIMIT  # render.page_text's promise, shown to the eye below
            mark = f"({page}/{len(pages)}, {size} bytes) " if len(pages) > 1 else ""
            self.say(f"🟢 {mark}{self._links(out.text)}".replace("\n", "\n   "))

    def show_template(self, notice: Notice) -> None:
        """A template message: a card of structured fields (each <= 20 characters)."""
        try:
            fields = template_data(notice)
        except KeyError:
            return
        lines = [f"🟢 [template message: {notice.kind}]"]
        lines += [f"   {key}: {value}" for key, value in fields.items()]
        self.say("\n".join(lines))


class WeChatConsoleChannel(ConsoleChannel):
    """The console channel speaking WeChat: follows, QR scenes and the scanner as WeChat's
    events, replies rendered by the WeChat adapter."""

    screen: WeChatScreen

    def command(self, text: str) -> Event:
        head, *args = text.split()
        if head.lower() == "/start":  # on WeChat: a follow, through a parametric QR if any
            return Scan(self.person, args[0], "qr_scene") if args else Follow(self.person)
        return super().command(text)

    def text(self, text: str) -> Event:
        data = self.screen.by_label.get(text.strip())
        if data is not None:  # a tapped menu link whose id did not come back
            return Choice(self.person, data, text.strip())
        return super().text(text)

    async def last_picture_payload(self) -> str | None:
        """On WeChat a code carries its bare payload (``Services.deep_link``)."""
        picture = self.screen.last_picture
        if picture is None:
            return None
        for text in await scan.read_qr(picture):
            return scan.start_payload(text) or text.strip()
        return None

    async def answer(self, event: Event, replies: Sequence[Reply]) -> None:
        await self.screen.show_wechat(replies)

    async def send(self, person: Person, replies: Sequence[Reply]) -> None:
        await self.screen.show_wechat(replies)

    async def notify(self, person: Person, notice: Notice, locale: str) -> None:
        self.screen.show_template(notice)


class WeChatConsole(Console):
    """The console demo's actions with WeChat's notices: after each step the ledger's events
    are read and the WeChat rows printed as the WeChat sender would send them."""

    channel: WeChatConsoleChannel

    def __init__(self, channel: WeChatConsoleChannel, reader: EventReader, setup: DemoSetup):
        super().__init__(channel, None, setup)
        self.reader = reader

    async def settle(self) -> None:
        try:
            await self.reader.catch_up()
        except LedgerClientError as exc:
            self.screen.say(f"   (notices could not be read: {exc})")
            return
        db = self.channel.services.db
        async with db.session() as session:
            rows = await outbox.claim(session, 100, channel=CHANNEL)
        outcomes = [await self._deliver(row) for row in rows]
        if outcomes:
            async with db.session() as session:
                await outbox.record(session, outcomes, utcnow())

    async def _deliver(self, row: Claimed) -> Outcome:
        if row.method != NOTICE_METHOD:
            return Outcome(row, outbox.SKIPPED, "not a notice")
        payload: dict[str, Any] = row.payload
        notice = Notice(str(payload["kind"]), dict(payload.get("fields") or {}))
        await self.channel.notify(Person(CHANNEL, row.address), notice, "zh_Hans")
        return Outcome(row, outbox.SENT)

    async def handle(self, line: str) -> bool:
        if line.strip() == ":help":
            self.screen.say(HELP)
            return True
        return await super().handle(line)


async def run(home: Path, stdin: TextIO, stdout: TextIO) -> int:
    services = await open_demo(home, CHANNEL)
    if services is None:
        return 2
    person = Person(CHANNEL, OPENID, None, "zh-hans")
    setup = await demo_setup(services.ledger, person.address)
    screen = WeChatScreen(stdout, home / "pictures")
    channel = WeChatConsoleChannel(services, neutral_router(), screen, person)
    reader = EventReader(services)
    try:
        try:
            await reader.position()
        except LedgerClientError as exc:
            screen.say(f"   (notices will not be shown: {exc})")
        console = WeChatConsole(channel, reader, setup)
        screen.say(f"Green Points on WeChat — data in {home}\n{HELP}\n")
        await console.send(Follow(person))  # following the account greets like /start
        await converse(console, stdin, stdout)
    finally:
        await setup.close()
        await close_services(services)
    return 0


def main(argv: Sequence[str] = ()) -> int:
    if argv:
        print(f"greenpoints demo --channel wechat takes no more arguments\n\n{HELP}",
              file=sys.stderr)
        return 2
    return in_terminal(run)
