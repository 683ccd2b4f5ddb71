"""What a person hears when their turn failed on our side, in their language, on any channel."""

from __future__ import annotations

from bot.chat.i18n import Translator


def busy_text(t: Translator) -> str:
    """The ledger is down or throttling: nothing changed, try again."""
    return t._("The points service is not answering right now. Please try again in a moment.")


def broken_text(t: Translator) -> str:
    """Anything else: a bug on our side, logged for operators."""
    return t._("Sorry, something went wrong on our side. Please try again.")
