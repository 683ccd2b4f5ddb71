"""``greenpoints demo``: the same features and texts as every channel, in a terminal — no token,
no network, no Bot API.

The console is a channel like the others (``bot.channels.console``): typed or piped lines become
neutral events for the same router and features, and replies are printed. Lines starting with
``:`` are console actions (send a location, tap a button, …). Notices come through the same
outbox sender and event reader as in production, printed instead of sent. The embedded ledger is
seeded with the Lin'an demo alliance on first run.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO

from bot.background import Background, catch_up, start_background, stop_background
from bot.channels.console.announcer import ConsoleAnnouncer
from bot.channels.console.channel import CHANNEL, ConsoleChannel
from bot.channels.console.screen import NoticePrinter, Screen
from bot.chat.events import Event, Person
from bot.config import SettingsError, load_settings
from bot.features import neutral_router
from bot.services import Services, close_services, open_services
from ledger_client.embedded import demo_setup
from ledger_client.errors import LedgerClientError

log = logging.getLogger(__name__)

BOT_USERNAME = "GreenPointsDemoBot"

HELP = """console actions:
  /start /balance /nearby /qr /language /settings /help   talk to the bot as usual
  :location LAT LON     share a location (:location alone: next to the demo shop)
  :tap N                press button N of the last message that had buttons
  :photo PATH           send a picture (merchant staff: a photo of a customer's QR)
  :staff                join the demo shop's staff (its first invite: you become its owner)
  :scan                 scan the last QR code shown, as a cashier's phone camera would
  :buy YUAN             the demo shop records a purchase of yours (points notice follows)
  :release              run today's voucher release (its digest follows at once here;
                        the bot sends it at the end of the member's digest period)
  :help                 this list
  :quit                 leave (end of input does the same)"""


class Console:
    """The demo person at the keyboard: each line a message or a console action."""

    def __init__(
        self,
        channel: ConsoleChannel,
        background: Background | None,
        setup: Any,
        announcer: ConsoleAnnouncer | None = None,
    ) -> None:
        self.channel, self.background, self.setup = channel, background, setup
        self.announcer = announcer
        self.screen = channel.screen

    async def send(self, event: Event | None) -> None:
        if event is None:
            self.screen.say("   (no such button)")
            return
        await self.channel.handle(event)
        await self.settle()

    async def settle(self) -> None:
        """Let notices and announcements caused by the last step arrive before the next
        prompt, then say which announcements finished."""
        if self.background is not None:
            if self.announcer is not None:
                await self.announcer.enqueued()
            await catch_up(self.background)
            await self.background.sender.settled()
            if self.announcer is not None:
                await self.announcer.report()

    async def handle(self, line: str) -> bool:
        """One line of input; False when the person wants to leave."""
        line = line.strip()
        if not line:
            return True
        channel = self.channel
        if not line.startswith(":"):
            await self.send(channel.text(line))
            return True
        action, *args = line[1:].split()
        if action in {"quit", "q", "exit"}:
            return False
        if action == "help":
            self.screen.say(HELP)
        elif action == "location":
            lat, lon = (float(args[0]), float(args[1])) if len(args) == 2 else self.setup.spot
            await self.send(channel.location(lat, lon))
        elif action == "tap" and args and args[0].isdigit():
            await self.send(channel.tap(int(args[0])))
        elif action == "photo" and args:
            path = _existing_file(" ".join(args))
            if path is None:
                self.screen.say(f"   (no such file: {' '.join(args)})")
                return True
            await self.send(channel.photo(path))
        elif action == "staff":
            await self.send(channel.command(f"/start {await self.setup.staff_invite()}"))
        elif action == "scan":
            payload = await channel.last_picture_payload()
            if payload is None:
                self.screen.say("   (no QR code on screen to scan; /qr shows one)")
                return True
            await self.send(channel.scanned(payload))
        elif action == "buy" and args:
            await self.setup.buy(channel.person.address, args[0], channel.person.channel)
            await self.settle()
        elif action == "release":
            await self.setup.release()
            await self.settle()
            if self.background is not None:  # the week's digest now, not next Monday
                await self.background.reader.gather_due(everything=True)
                await self.settle()
        else:
            self.screen.say("   (unknown action; :help lists them)")
        return True


def _existing_file(text: str) -> Path | None:
    path = Path(text).expanduser()
    return path if path.is_file() else None


def demo_home() -> Path:
    home = Path(os.environ.get("GREENPOINTS_DEMO_DIR", "greenpoints-demo")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


async def open_demo(home: Path, channel: str) -> Services | None:
    """The demo's services on embedded SQLite under ``home`` (a ledger in-process, seeded by
    the caller); None after saying why not on standard error."""
    os.environ.setdefault("GREENPOINTS_LEDGER_URL", f"sqlite:///{home / 'ledger.db'}")
    os.environ.setdefault("GREENPOINTS_DATABASE_URL", f"sqlite:///{home / 'bot.db'}")
    try:
        settings = load_settings(
            rate_overall=1000.0, rate_per_chat=1000.0, event_poll_seconds=3600.0
        )
    except SettingsError as exc:
        print(f"greenpoints demo: {exc}", file=sys.stderr)
        return None
    if settings.remote_ledger:
        print(
            "greenpoints demo: the demo runs the ledger in-process; unset "
            "GREENPOINTS_LEDGER_URL or point it at a database",
            file=sys.stderr,
        )
        return None
    services = await open_services(settings, channel=channel)
    services.bot_username = BOT_USERNAME
    return services


async def converse(console: Console, stdin: TextIO, stdout: TextIO) -> None:
    """Read lines until the end of input or ``:quit``; a piped line is echoed after ``> ``."""
    screen = console.screen
    interactive = stdin.isatty()
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            stdout.write("> ")
            stdout.flush()
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            break
        if not interactive:
            screen.say(f"> {line.rstrip()}")
        try:
            if not await console.handle(line):
                break
        except (ValueError, IndexError, LedgerClientError) as exc:
            # A console action the ledger refused (``:buy -5``) is told, not fatal; a
            # chat message never gets here (the channel answers those itself).
            screen.say(f"   (could not do that: {exc})")


async def run(home: Path, stdin: TextIO, stdout: TextIO) -> int:
    services = await open_demo(home, CHANNEL)
    if services is None:
        return 2
    person = Person(CHANNEL, "10001", "陈小绿", "zh-hans")
    setup = await demo_setup(services.ledger, person.address)
    screen = Screen(stdout, home / "pictures")
    channel = ConsoleChannel(services, neutral_router(), screen, person)
    background: Background | None = None
    announcer = ConsoleAnnouncer(services, screen)
    services.announcer = announcer  # /broadcast by an admin (GREENPOINTS_ADMIN_IDS=10001)
    try:
        background = await start_background(services, NoticePrinter(screen))
        await announcer.start()
        console = Console(channel, background, setup, announcer)
        screen.say(f"Green Points demo — data in {home}\n{HELP}\n")
        await console.handle("/start")
        await converse(console, stdin, stdout)
    finally:
        await announcer.stop()
        if background is not None:
            await stop_background(background)
        await setup.close()
        await close_services(services)
    return 0


def in_terminal(demo: Callable[[Path, TextIO, TextIO], Coroutine[Any, Any, int]]) -> int:
    """Run a demo (``run(home, stdin, stdout)``) on this process's standard streams."""
    stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    try:
        # Bytes that are not UTF-8 are replaced, not fatal, like any chat platform would.
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        return asyncio.run(demo(demo_home(), stdin, stdout))
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] = ()) -> int:
    if argv:
        print(f"greenpoints demo takes no arguments\n\n{HELP}", file=sys.stderr)
        return 2
    return in_terminal(run)
