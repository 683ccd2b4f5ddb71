"""Runs before every handler (group -1): who is this, in which language, should we answer at all.

Messages from groups and channels, edits of old messages and updates without a person get a
deliberate silence (a command in a group gets one pointer to the private chat), so the handlers
only ever see private chats with a known profile.
"""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop

from bot.context import GPContext
from bot.i18n import negotiate, translator


async def prepare(update: object, context: GPContext) -> None:
    if not isinstance(update, Update):
        raise ApplicationHandlerStop
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or user.is_bot or update.edited_message is not None:
        raise ApplicationHandlerStop
    if chat.type != ChatType.PRIVATE:
        message = update.message
        if message is not None and message.text and message.text.startswith("/"):
            t = translator(negotiate(user.language_code))
            await message.reply_text(
                t._("Let's talk in a private chat: tap my name and press Start.")
            )
        raise ApplicationHandlerStop
    services = context.services
    profile = await services.chats.seen(
        chat.id, negotiate(user.language_code), user.full_name[:64] or None, services.channel
    )
    context.profile = profile
    context.t = translator(profile.locale)
