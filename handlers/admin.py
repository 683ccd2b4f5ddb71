"""Admins: /broadcast, /broadcasts, /stats. (Filled in by the merchant/admin issue.)"""

from __future__ import annotations

from bot.context import App


def register(app: App) -> None:
    return None
