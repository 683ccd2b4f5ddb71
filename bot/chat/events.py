"""What a person did, as every channel reports it (DESIGN.md "The conversation core").

A channel parses its platform's update into exactly one of these before any feature sees it:
a Telegram ``/start x`` and a WeChat ``qrscene_x`` subscribe both become a ``Scan``; an inline
button tap and a WeChat menu-link tap both become a ``Choice``. Each event names the person by
``Person`` (channel + string address, because WeChat openids are strings), which is also how
the bot's tables key them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

ScanVia = Literal["deep_link", "qr_scene", "scanner"]
"""How a scanned payload arrived: a Telegram ``t.me/bot?start=x`` link (``deep_link``), a WeChat
parametric QR code (``qr_scene``: ``qrscene_x`` on follow or ``SCAN``), or a camera scan the
platform did for us (``scanner``: WeChat ``scancode_waitmsg``)."""


@dataclass(frozen=True, slots=True)
class Person:
    """Who an event came from and where replies go.

    ``channel`` is the adapter's name (``telegram``, ``wechat``, ``console``); ``address`` is the
    platform's id for the conversation as a string (a Telegram chat id as decimal, a WeChat
    openid). ``name`` is the display name the platform reported, raw: clean it
    (``bot.chat.cleaning``) before showing it to anyone else. ``locale_hint`` is the platform's
    language tag (``zh-hans``, ``en-US``), used only until the person chooses a language.
    """

    channel: str
    address: str
    name: str | None = None
    locale_hint: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel, self.address)


@dataclass(frozen=True, slots=True)
class Command:
    """``/name args``: ``name`` lower-case without the slash or a ``@bot`` suffix; ``args`` the
    whitespace-separated words after it (Telegram commands; WeChat menu clicks map to these)."""

    person: Person
    name: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Text:
    """Free text the person typed (not a command, not a recognised choice label)."""

    person: Person
    text: str


@dataclass(frozen=True, slots=True)
class Choice:
    """The person picked one of the choices a ``TextReply`` offered.

    ``data`` is the ``ChoiceButton.data`` the reply carried, returned untrusted (a stale message
    or a forged client can send anything): parse it strictly. ``label`` is what the person saw,
    when the platform reports it (WeChat menu links return the label, sometimes without the id).
    ``message_id`` is the number of the message the choice sat on within the person's chat, where
    the platform numbers messages and can edit them later (Telegram); None where it cannot (WeChat,
    the console). A feature keeps it to have that message redrawn later (an announcement's
    progress, ``Broadcasts.set_progress_message``); it never needs to know the platform's form.
    ``tap_id`` is the platform's handle on the tap itself, for the channel to answer it
    (Telegram's callback query id: the toast, the spinner); features never read it.
    """

    person: Person
    data: str
    label: str | None = None
    message_id: int | None = None
    tap_id: str | None = None


@dataclass(frozen=True, slots=True)
class Location:
    """A point the person shared: WGS-84 degrees (channels convert GCJ-02 at the edge, WECHAT.md
    rule 11); ``label`` the place name the platform attached, if any."""

    person: Person
    lat: float
    lon: float
    label: str | None = None


PhotoFetch = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Photo:
    """A picture the person sent. The bytes are fetched only when a feature asks (``fetch()``),
    because most photos are not for us and downloads cost time and quota. ``fetch`` raises
    ``ChannelError`` (``bot.chat.channel``) when the platform no longer has the file."""

    person: Person
    fetch: PhotoFetch = field(compare=False, repr=False)
    caption: str | None = None
    file_ref: str | None = None
    """The platform's handle on the stored file (a Telegram ``file_id``), so the same picture
    can be sent again on the same channel without downloading it (announcements)."""


@dataclass(frozen=True, slots=True)
class Scan:
    """A payload that arrived through a link or a code rather than typing: staff invites, a
    customer's redemption code scanned by the till. ``payload`` is the raw string (strip
    nothing but the platform's own prefix, e.g. WeChat's ``qrscene_``); ``via`` says how."""

    person: Person
    payload: str
    via: ScanVia = "deep_link"


StartPayload = Scan
"""``/start <payload>`` is a ``Scan`` with ``via='deep_link'``; the alias reads better there."""


@dataclass(frozen=True, slots=True)
class Follow:
    """The person started the bot or followed the account (Telegram ``/start`` with no payload,
    WeChat ``subscribe`` without a scene)."""

    person: Person


@dataclass(frozen=True, slots=True)
class Unfollow:
    """The person blocked the bot or unfollowed the account: stop sending until they return."""

    person: Person


Event = Command | Text | Choice | Location | Photo | Scan | Follow | Unfollow
"""Every incoming event; features match on the concrete class."""
