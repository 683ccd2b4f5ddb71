"""Inline-button data: short, versioned, and checked on the way back in.

Telegram returns whatever a button carried, so data from a stale message or a forged client
is parsed strictly; anything that does not parse is answered as an expired button.
"""

from __future__ import annotations

import re

from telegram import CallbackQuery, InlineKeyboardMarkup
from telegram.error import BadRequest

from bot.chat.choice_data import MAX_BYTES, SEP, as_int, pack, unpack

__all__ = ["MAX_BYTES", "SEP", "as_int", "edit_text", "pack", "pattern", "unpack"]


def pattern(kind: str) -> str:
    """A CallbackQueryHandler pattern matching this kind's buttons."""
    return f"^{re.escape(kind)}(\\{SEP}|$)"


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
