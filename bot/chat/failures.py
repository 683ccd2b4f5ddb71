"""What a person hears when their turn failed or was refused, in their language, on any channel."""

from __future__ import annotations

from bot.chat.cleaning import clean_text
from bot.chat.i18n import Translator

STAFF_REVOKED = "staff.revoked"
"""The notice kind a revoked cashier is told by (the bot's own, not a ledger event)."""


def busy_text(t: Translator) -> str:
    """The ledger is down or throttling: nothing changed, try again."""
    return t._("The points service is not answering right now. Please try again in a moment.")


def broken_text(t: Translator) -> str:
    """Anything else: a bug on our side, logged for operators."""
    return t._("Sorry, something went wrong on our side. Please try again.")


def staff_revoked_text(t: Translator, merchant: str) -> str:
    """A cashier whose staff access an owner revoked: at their next tap or scan, and as the
    ``staff.revoked`` notice the revocation queues (``bot.outbox.notices``)."""
    shown = clean_text(merchant, single_line=True) or "**"
    return t._(
        "Your staff access to {merchant} was revoked, so I cannot do this for it. Nothing was "
        "done. Ask the shop's owner if this is a mistake."
    ).format(merchant=shown)
