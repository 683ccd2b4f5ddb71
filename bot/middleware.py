"""Runs before every handler (group -1): who is this, in which language, should we answer at all.

Messages from groups and channels, edits of old messages and updates without a person get a
deliberate silence (a command in a group gets one pointer to the private chat), so the handlers
only ever see private chats with a known profile.

It is also where an update's handling begins for operators: the update id goes on every log line
and into the ledger request ids from here on (``bot.logs.begin_update``), the update is counted in
and its clock started (``bot.metrics``), and one counted out as ``ignored`` if it stops here.
"""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop

from bot.context import GPContext
from bot.i18n import negotiate, translator
from bot.logs import begin_update
from bot.metrics import IGNORED, MIDDLEWARE, instrument


async def prepare(update: object, context: GPContext) -> None:
    metrics = instrument(context.application)
    if isinstance(update, Update):
        begin_update(update.update_id)
        metrics.received(update)
    try:
        await _prepare(update, context)
    except ApplicationHandlerStop:
        metrics.finished(update, IGNORED, "ignored")
        raise
    except Exception:
        # python-telegram-bot reports it and carries on to the handlers, which cannot do
        # without a profile: the update is counted here, once, as an error of the middleware.
        metrics.finished(update, MIDDLEWARE, "error")
        raise


async def _prepare(update: object, context: GPContext) -> None:
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
