"""``greenpoints demo``'s conversation: lines in, neutral events through the same router and
features as every channel, replies printed by ``Screen``.

A line is a message, a command, or a console action (``:location``, ``:tap N``, ``:photo PATH``,
``:scan``, ``:staff``, …) that stands for what a phone would do. One person (the demo consumer)
sits at the keyboard; their profile is found as any channel's middleware finds it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bot.channels.console.screen import Screen
from bot.chat.channel import CONSOLE
from bot.chat.events import (
    Choice,
    Command,
    Event,
    Location,
    Person,
    Photo,
    Scan,
    Text,
)
from bot.chat.i18n import translator
from bot.chat.middleware import run_turn
from bot.chat.replies import Notice, Reply
from bot.chat.router import Router
from bot.media import scan
from bot.outbox.notices import notice_text
from bot.services import Services

log = logging.getLogger(__name__)

CHANNEL = "console"


def _reader(path: Path) -> Callable[[], Awaitable[bytes]]:
    async def fetch() -> bytes:
        return await asyncio.to_thread(path.read_bytes)

    return fetch


class ConsoleChannel:
    """The console as a ``bot.chat.channel.Channel``: the methods named for console actions turn
    a line into an event, ``handle`` runs its turn and prints the replies."""

    capabilities = CONSOLE

    def __init__(self, services: Services, router: Router, screen: Screen, person: Person):
        self.services = services
        self.router = router
        self.screen = screen
        self.person = person

    def command(self, text: str) -> Event:
        head, *args = text.split()
        name = head[1:].lower()
        if name == "start" and args:
            return Scan(self.person, args[0], "deep_link")
        return Command(self.person, name, tuple(args))

    def text(self, text: str) -> Event:
        return self.command(text) if text.startswith("/") else Text(self.person, text)

    def location(self, lat: float, lon: float) -> Event:
        return Location(self.person, lat, lon)

    def tap(self, n: int) -> Event | None:
        """Button ``n`` (from 1) of the last message that had buttons; None when there is none."""
        if not 1 <= n <= len(self.screen.choices):
            return None
        choice = self.screen.choices[n - 1]
        return Choice(self.person, choice.data, choice.label)

    def photo(self, path: Path) -> Event:
        return Photo(self.person, _reader(path), None, str(path))

    def scanned(self, payload: str) -> Event:
        return Scan(self.person, payload, "scanner")

    async def last_picture_payload(self) -> str | None:
        """The deep-link payload in the last picture shown, read from its pixels."""
        picture = self.screen.last_picture
        if picture is None:
            return None
        for text in await scan.read_qr(picture):
            payload = scan.start_payload(text)
            if payload:
                return payload
        return None

    async def answer(self, event: Event, replies: Sequence[Reply]) -> None:
        self.screen.show(replies)

    async def send(self, person: Person, replies: Sequence[Reply]) -> None:
        self.screen.show(replies)

    async def notify(self, person: Person, notice: Notice, locale: str) -> None:
        text = notice_text(notice, translator(locale))
        if text:
            self.screen.show_text(text)

    async def handle(self, event: Event) -> None:
        """Run one turn and print its replies; a failure on our side is said, not raised."""
        await self.answer(event, await run_turn(self.services, self.router, event, CONSOLE))


