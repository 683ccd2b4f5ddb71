"""The commands people can give, by role, with the one-line description each menu shows.

One table for every place that lists commands: Telegram's per-chat command menus
(``bot.channels.telegram.menus``) and /help (``handlers.start``), so a staff member or an
admin is told the same commands in the menu and in the help text, in their language.
Descriptions are msgids, translated where they are shown.
"""

from __future__ import annotations

from bot.chat.i18n import N_

Entry = tuple[str, str]
"""(command name without the slash, description msgid)."""

CONSUMER: tuple[Entry, ...] = (
    ("balance", N_("My points and vouchers")),
    ("nearby", N_("Alliance merchants near me")),
    ("qr", N_("Show my redemption code")),
    ("pool", N_("Points pool and point price")),
    ("language", N_("Change language")),
    ("settings", N_("Notices on or off")),
    ("help", N_("What I can do")),
    ("start", N_("Start again")),
    ("link", N_("Link WeChat and Telegram")),
)
STAFF: tuple[Entry, ...] = (
    ("today", N_("Today's redemptions at my shop")),
    ("statement", N_("My shop's statement (owners)")),
    ("staff", N_("My shop's staff (owners)")),
)
ADMIN: tuple[Entry, ...] = (
    ("broadcast", N_("Send an announcement")),
    ("broadcasts", N_("Recent announcements")),
    ("stats", N_("Alliance figures")),
    ("circle", N_("15-minute convenience circle")),
)


def entries(*, staff: bool = False, admin: bool = False) -> list[Entry]:
    """The commands a person of this role may use, consumers' first."""
    return list(CONSUMER) + (list(STAFF) if staff else []) + (list(ADMIN) if admin else [])
