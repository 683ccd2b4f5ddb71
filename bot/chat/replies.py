"""What a feature says back, in terms every channel can render (DESIGN.md "The conversation core").

A feature returns a list of these; the person's channel renders them as well as its platform
allows (``bot.chat.channel.Capabilities``): choices become inline buttons on Telegram and
menu links on WeChat, ``replaces`` becomes an edit only where edits exist, a ``Toast`` may be
dropped, a ``Place`` becomes a map link where venues do not exist. ``Notice`` is the one reply
that is stored rather than sent: the outbox keeps its kind and fields and the channel renders it
at send time (WeChat needs structured template fields, WECHAT.md rule 3).

Texts here are already translated and formatted for the person's locale; a channel only
splits, shortens and encodes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ChoiceButton:
    """One choice offered under a text: ``label`` shown to the person, ``data`` returned in the
    ``Choice`` event when it is picked (at most 64 UTF-8 bytes: Telegram's callback limit and
    WeChat's menu id limit)."""

    label: str
    data: str

    def __post_init__(self) -> None:
        if len(self.data.encode()) > 64:
            raise ValueError(f"choice data over 64 bytes: {self.data!r}")


ChoiceRows = tuple[tuple[ChoiceButton, ...], ...]


def rows(*lines: Sequence[ChoiceButton]) -> ChoiceRows:
    """Rows of choices as a ``TextReply`` takes them: ``rows([a, b], [c])``."""
    return tuple(tuple(line) for line in lines)


@dataclass(frozen=True, slots=True)
class TextReply:
    """A text, optionally with choices under it.

    ``replaces`` hints that this text supersedes the message whose choice it answers (a menu
    that moves on): Telegram edits that message, channels without edits send a new one.
    A text longer than the channel's limit is split by the channel (``bot.chat.splitting``);
    features that build lists from stored data page them (``bot.chat.paging``) so choices
    stay with their page.
    """

    text: str
    choices: ChoiceRows = ()
    replaces: bool = False


@dataclass(frozen=True, slots=True)
class Picture:
    """A PNG image. ``caption`` goes under it where the platform allows captions; ``alt_text``
    is what a channel without images (or without captions, WeChat rule 10) sends as text.
    ``choices`` and ``replaces`` mean what they mean on a ``TextReply`` (a fresh QR code
    replaces the picture whose button asked for it)."""

    png: bytes = field(repr=False)
    caption: str | None = None
    alt_text: str | None = None
    choices: ChoiceRows = ()
    replaces: bool = False
    file_ref: str | None = None
    """Instead of ``png``: a picture the same channel already holds (``Photo.file_ref``)."""


@dataclass(frozen=True, slots=True)
class Document:
    """A file to keep (an owner's statement as CSV, issue 11): ``data`` named ``filename``,
    ``caption`` under it where the platform allows. A channel that cannot send files
    (``Capabilities.documents`` false: WeChat) sends ``alt_text`` as text instead."""

    data: bytes = field(repr=False)
    filename: str
    caption: str | None = None
    alt_text: str | None = None


@dataclass(frozen=True, slots=True)
class Place:
    """A merchant on a map: WGS-84 degrees. Telegram sends a venue; others send a map link or
    the name and address as text."""

    name: str
    address: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class AskLocation:
    """Ask the person to share their location: Telegram shows a one-tap location keyboard
    labelled ``button``; WeChat points to "+ → 位置". ``prompt`` is the text shown with it."""

    prompt: str
    button: str = "📍"


@dataclass(frozen=True, slots=True)
class Toast:
    """A short, passing acknowledgement of a choice ("Expired button"). Channels without toasts
    drop it or send it as text (``Capabilities.toasts``). An empty text only acknowledges: where
    it stands among the replies says when the tap counts as answered (Telegram stops the
    button's spinner then)."""

    text: str
    alert: bool = False


NOTICE_KINDS = frozenset(
    {
        "points.earned",
        "voucher.granted",
        "voucher.expiring",
        "voucher.redeemed",
        "redemption.receipt",
        "announcement",
        "voucher.redemption_undone",
        "purchase.refunded",
        "staff.revoked",
        "voucher.digest",
        "written",
    }
)
"""The kinds a channel must be able to render; the first four are the ledger's event kinds.
``voucher.digest`` gathers a period's grants (issue 12); ``written`` is a text written before
notices were stored neutral (bot migration 0004), sent as it is."""
NoticeValue = str | int | None


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the bot tells a person on its own, stored in the outbox and rendered by the
    person's channel when sent.

    ``fields`` are plain values, never preformatted text, so a channel can fill a template:
    amounts in integer fen (``amount_fen``), points as integers (``points``), moments as ISO
    8601 UTC strings (``expires_at``), names raw (``merchant``; cleaned at render). An
    announcement carries its already-written ``text``.
    """

    kind: str
    fields: Mapping[str, NoticeValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in NOTICE_KINDS:
            raise ValueError(f"unknown notice kind: {self.kind!r}")


Reply = TextReply | Picture | Document | Place | AskLocation | Toast
"""What a feature returns to the person it is answering (a ``Notice`` goes to the outbox)."""
