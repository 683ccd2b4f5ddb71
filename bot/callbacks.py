"""Inline-button data: short, versioned, and checked on the way back in.

Telegram returns whatever a button carried, so data from a stale message or a forged client
is parsed strictly; anything that does not parse is answered as an expired button.
"""

from __future__ import annotations

import re

from telegram import CallbackQuery, InlineKeyboardMarkup
from telegram.error import BadRequest

SEP = "|"
_PART = re.compile(r"^[A-Za-z0-9_.:\-*]{0,40}$")
MAX_BYTES = 64


def pack(kind: str, *parts: object) -> str:
    text = SEP.join([kind, *(str(p) for p in parts)])
    if len(text.encode()) > MAX_BYTES:
        raise ValueError(f"callback data too long: {text!r}")
    return text


def unpack(data: str | None, kind: str, arity: int) -> list[str] | None:
    """The parts after ``kind``, or None when ``data`` is not a well-formed ``kind`` button."""
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    parts = data.split(SEP)
    if parts[0] != kind or len(parts) != arity + 1:
        return None
    if not all(_PART.match(p) for p in parts[1:]):
        return None
    return parts[1:]


def pattern(kind: str) -> str:
    """A CallbackQueryHandler pattern matching this kind's buttons."""
    return f"^{re.escape(kind)}(\\{SEP}|$)"


def as_int(text: str, low: int, high: int) -> int | None:
    if not re.fullmatch(r"-?\d{1,19}", text):
        return None
    value = int(text)
    return value if low <= value <= high else None


async def edit_text(
    query: CallbackQuery, text: str, reply_markup: InlineKeyboardMarkup | None = None
) -> None:
    """Edit the message a button sits on; a second tap that would change nothing is fine.

    Telegram refuses an edit to the same text and buttons ("message is not modified"), which
    a double tap or a tap on an old message easily causes; that is not an error to the person.
    """
    try:
        await query.edit_message_text(text, reply_markup=reply_markup)
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise
