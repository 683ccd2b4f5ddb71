"""The last line of defence: whatever a handler raised, the person gets a short, kind reply.

python-telegram-bot hands error handlers a fresh context, without the profile and translator
the middleware set, so the person's language is looked up again here.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import Forbidden, TelegramError

from bot.channels.telegram.context import GPContext
from bot.chat.failures import broken_text, busy_text
from bot.chat.i18n import Translator, negotiate, translator

__all__ = ["broken_text", "busy_text", "on_error"]
from ledger_client import errors as ledger_errors

log = logging.getLogger(__name__)


async def _translator(update: object, context: GPContext) -> Translator:
    """The person's chosen language, or their app's when the bot's database cannot say."""
    if not isinstance(update, Update):
        return context.t
    chat = update.effective_chat
    if chat is not None:
        try:
            profile = await context.services.chats.get((context.services.channel, str(chat.id)))
        except Exception:  # the bot's database may be the very thing that failed
            log.warning("no profile for chat %s while reporting an error", chat.id, exc_info=True)
            profile = None
        if profile is not None:
            return translator(profile.locale)
    user = update.effective_user
    return translator(negotiate(user.language_code if user else None))


async def on_error(update: object, context: GPContext) -> None:
    error = context.error
    t = await _translator(update, context)
    if isinstance(error, ledger_errors.Unavailable | ledger_errors.Throttled):
        log.warning("ledger unavailable while handling an update: %s", error)
        text = busy_text(t)
    elif isinstance(error, Forbidden) and isinstance(update, Update) and update.effective_chat:
        await context.services.chats.mark_blocked(
            [(context.services.channel, str(update.effective_chat.id))]
        )
        return
    else:
        log.error("unhandled error while handling an update", exc_info=error)
        text = broken_text(t)
    if not isinstance(update, Update):
        return
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(text, show_alert=True)
        elif update.effective_message is not None:
            await update.effective_message.reply_text(text)
    except TelegramError:
        log.warning("could not tell the person about the error", exc_info=True)
