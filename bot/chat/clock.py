"""The bot's clock for features: naive UTC, the form the bot's database and the ledger client's
timestamps are in (so a code's expiry minus ``utcnow()`` is the time left). Kept by
``bot.storage.chats``; named here so features reach it through the core."""

from __future__ import annotations

from bot.storage.chats import utcnow

__all__ = ["utcnow"]
