"""What a channel can do, and the two things every channel does: render and send.

Features never look at these; the renderer does, so a feature's replies reach every platform in
a form that platform accepts (DESIGN.md "The conversation core": a long text is paged or split,
buttons degrade to menu links or numbered replies, an edit becomes a new message where edits do
not exist).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from bot.chat.events import Event, Person
from bot.chat.replies import Notice, Reply
from bot.chat.splitting import Unit

TextUnit = Unit
"""How a platform counts its text limit: Telegram counts characters as UTF-16 code units (an
emoji outside the BMP counts two; ``splitting.measure``), WeChat counts UTF-8 bytes."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a platform allows. ``text_limit`` is the longest text message in ``text_unit``;
    ``caption_limit`` the longest picture caption (0: pictures carry no caption);
    ``choice_label_limit`` the longest choice label in ``text_unit``."""

    name: str
    edits: bool
    inline_choices: bool
    toasts: bool
    venues: bool
    text_limit: int
    text_unit: TextUnit
    caption_limit: int = 0
    choice_label_limit: int = 64
    documents: bool = False  # files (a statement's CSV) can be sent


TELEGRAM = Capabilities(
    name="telegram",
    edits=True,
    inline_choices=True,
    toasts=True,
    venues=True,
    text_limit=4096,
    text_unit="chars",
    caption_limit=1024,
    documents=True,
)
"""Bot API limits: 4,096-character texts, 1,024-character captions."""

WECHAT = Capabilities(
    name="wechat",
    edits=False,
    inline_choices=False,
    toasts=False,
    venues=False,
    text_limit=2048,
    text_unit="utf8_bytes",
    caption_limit=0,
    choice_label_limit=128,
)
"""WECHAT.md rules 6, 7, 10, 11: 2,048-byte texts, menu links, no edits, toasts, captions or
venues."""

CONSOLE = replace(TELEGRAM, name="console")
"""The terminal demo shows what Telegram would; an edit is printed again, marked "(edited)"."""


class ChannelError(Exception):
    """The platform refused or failed a call (after the channel's own retries)."""


class PersonGone(ChannelError):
    """The person blocked the bot or unfollowed: stop sending until they come back."""


@runtime_checkable
class Channel(Protocol):
    """One chat platform, as the core and the outbox see it.

    ``answer`` sends the replies to the event that caused them (Telegram may edit the message a
    choice sat on; WeChat may use its one passive reply). ``send`` delivers replies unasked (the
    outbox), and ``notify`` renders a stored notice for this platform and sends it. Both raise
    ``PersonGone`` or ``ChannelError``.
    """

    @property
    def capabilities(self) -> Capabilities: ...

    async def answer(self, event: Event, replies: Sequence[Reply]) -> None: ...

    async def send(self, person: Person, replies: Sequence[Reply]) -> None: ...

    async def notify(self, person: Person, notice: Notice, locale: str) -> None: ...
