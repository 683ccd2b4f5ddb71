"""Merchant staff: invites, scanning customers' codes, bill, preview, confirm; /today.

(Filled in by the merchant issue; the consumer bot routes deep links here.)
"""

from __future__ import annotations

from telegram import Update

from bot.context import App, GPContext


async def open_deep_link(update: Update, context: GPContext, payload: str) -> bool:
    """Handle a ``/start <payload>`` that is a redemption code or staff invite; False if not."""
    return False


def register(app: App) -> None:
    return None
