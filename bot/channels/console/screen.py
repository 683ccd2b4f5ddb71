"""Neutral replies printed in a terminal, the way the demo has always shown the conversation.

``🤖`` starts what the bot says (continuation lines indented), choices are numbered for ``:tap``,
a picture is drawn as a terminal QR and saved as a file (``:scan`` reads the last one), a place
is a map link, a toast is a ``💬`` line, and a reply that replaces another is marked ``(edited)``.
Texts are split within ``CONSOLE``'s limit like any channel's.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bot.chat.channel import CONSOLE
from bot.chat.replies import (
    AskLocation,
    ChoiceButton,
    ChoiceRows,
    Document,
    Picture,
    Place,
    Reply,
    TextReply,
    Toast,
)
from bot.chat.splitting import split
from bot.media import qr

CAPS = CONSOLE


class Screen:
    def __init__(self, out: TextIO, pictures: Path) -> None:
        self.out = out
        self.pictures = pictures
        self.choices: list[ChoiceButton] = []  # the last message's, numbered from 1
        self.last_picture: bytes | None = None  # what ``:scan`` points the camera at

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def show_text(self, text: str) -> None:
        self.show([TextReply(text)])

    def _bot(self, text: str, edited: bool = False) -> None:
        mark = "(edited) " if edited else ""
        self.say(f"🤖 {mark}{text}".replace("\n", "\n   "))

    def _choices(self, choices: ChoiceRows) -> None:
        lines = [line for line in choices if line]
        if not lines:
            return
        self.choices = []
        shown = []
        for line in lines:
            cells = []
            for choice in line:
                self.choices.append(choice)
                cells.append(f"[{len(self.choices)} {choice.label}]")
            shown.append(" ".join(cells))
        self.say("   " + "\n   ".join(shown))

    def _picture(self, png: bytes) -> None:
        self.pictures.mkdir(parents=True, exist_ok=True)
        path = self.pictures / f"picture-{uuid.uuid4().hex[:8]}.png"
        path.write_bytes(png)
        self.last_picture = png
        with contextlib.suppress(ValueError):
            self.say(qr.terminal_from_png(png))
        self.say(f"   (picture saved to {path})")

    def show(self, replies: Sequence[Reply]) -> None:
        for reply in replies:
            if isinstance(reply, TextReply):
                parts = split(reply.text, CAPS.text_limit, CAPS.text_unit)
                for n, part in enumerate(parts):
                    self._bot(part, edited=reply.replaces and n == 0)
                self._choices(reply.choices)
            elif isinstance(reply, Picture):
                if reply.png:
                    self._picture(reply.png)
                if reply.caption:  # no empty bubble under a picture without words
                    self._bot(reply.caption, edited=reply.replaces)
                self._choices(reply.choices)
            elif isinstance(reply, Document):
                self.pictures.mkdir(parents=True, exist_ok=True)
                path = self.pictures / reply.filename
                path.write_bytes(reply.data)
                if reply.caption:
                    self._bot(reply.caption)
                self.say(f"   (file saved to {path})")
            elif isinstance(reply, Place):
                self.say(
                    f"🤖 📍 {reply.name} — {reply.address}\n   "
                    f"https://uri.amap.com/marker?position={reply.lon},{reply.lat}"
                )
            elif isinstance(reply, AskLocation):
                self._bot(reply.prompt)
                self.say(f"   ⌨ {reply.button}   (:location sends one)")
            elif isinstance(reply, Toast) and reply.text:
                self.say(f"   💬 {reply.text}")


class NoticePrinter:
    """The outbox sender's way out in the console: what the sender would deliver, printed.

    The outbox still stores Bot API-shaped rows (a method and its text or caption); this prints
    their text, so notices arrive in the conversation as they would in a chat.
    """

    def __init__(self, screen: Screen) -> None:
        self.screen = screen

    async def do_api_request(self, endpoint: str, api_kwargs: dict[str, object] | None = None, /
                             ) -> object:
        params = api_kwargs or {}
        text = params.get("text") or params.get("caption")
        if isinstance(text, str) and text:
            self.screen.show([TextReply(text)])
        return True
