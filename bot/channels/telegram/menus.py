"""The command menu, in every language, and the extra commands staff and admins see (the
table is ``bot.chat.commands``'s).

Telegram keys command lists by two-letter language code, which cannot tell Simplified from
Traditional Chinese, and a menu for a role must not show to everyone; both are handled with
per-chat menus set when a person's language or role becomes known.
"""

from __future__ import annotations

import logging

from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import TelegramError

from bot.chat.commands import entries
from bot.chat.i18n import LOCALES, Translator, translator

log = logging.getLogger(__name__)

# Telegram's two-letter codes and the catalog each one gets; no code means everyone else.
LANGUAGE_MENUS = {None: "zh_Hans", "zh": "zh_Hans", "en": "en"}


def commands(t: Translator, staff: bool = False, admin: bool = False) -> list[BotCommand]:
    listed = entries(staff=staff, admin=admin)
    return [BotCommand(name, t._(description)) for name, description in listed]


async def register_defaults(bot: Bot) -> None:
    for code, locale in LANGUAGE_MENUS.items():
        await bot.set_my_commands(commands(translator(locale)), language_code=code)


def needs_own_menu(locale: str, chosen: bool, staff: bool, admin: bool) -> bool:
    """A language the person picked may differ from their app's, which picks the default menu."""
    return chosen or staff or admin or locale not in LANGUAGE_MENUS.values()


async def refresh_chat_menu(
    bot: Bot, chat_id: int, locale: str, *, chosen: bool, staff: bool, admin: bool
) -> None:
    """Give this chat the menu its language and role call for (or drop back to the default)."""
    scope = BotCommandScopeChat(chat_id)
    try:
        if needs_own_menu(locale, chosen, staff, admin):
            await bot.set_my_commands(commands(translator(locale), staff, admin), scope=scope)
        else:
            await bot.delete_my_commands(scope=scope)
    except TelegramError:
        log.warning("could not set the command menu of chat %s", chat_id, exc_info=True)


__all__ = ["LOCALES", "commands", "refresh_chat_menu", "register_defaults"]
