"""Runs before every handler (group -1): who is this, in which language, should we answer at all.

Messages from groups and channels, edits of old messages and updates without a person get a
deliberate silence (a command in a group gets one pointer to the private chat), so the handlers
only ever see private chats with a known profile.

It is also where an update's handling begins for operators: the update id goes on every log line
and into the ledger request ids from here on (``bot.ops.logs.begin_update``), the update is
counted in and its clock started (``bot.ops.metrics``), and one counted out as ``ignored`` if it
stops here.
"""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop

from bot.channels.telegram.context import GPContext
from bot.channels.telegram.errors import on_error
from bot.channels.telegram.events import person_of
from bot.chat.i18n import negotiate, translator
from bot.chat.middleware import find_profile
from bot.ops.logs import begin_update
from bot.ops.metrics import IGNORED, MIDDLEWARE, metrics_of


async def prepare(update: object, context: GPContext) -> None:
    metrics = metrics_of(context.application)
    if isinstance(update, Update):
        begin_update(update.update_id)
        metrics.received(update)
    try:
        await _prepare(update, context)
    except ApplicationHandlerStop:
        metrics.finished(update, IGNORED, "ignored")
        raise
    except Exception as exc:
        # Left to python-telegram-bot, the handlers would run on without a profile and fail
        # again (two error replies for one message): report it here, once, and stop.
        metrics.finished(update, MIDDLEWARE, "error")
        context.error = exc
        await on_error(update, context)
        raise ApplicationHandlerStop from exc


async def _prepare(update: object, context: GPContext) -> None:
    if not isinstance(update, Update):
        raise ApplicationHandlerStop
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or user.is_bot or update.edited_message is not None:
        raise ApplicationHandlerStop
    if chat.type != ChatType.PRIVATE:
        message = update.message
        if message is not None and _is_our_command(message.text, context.bot.username):
            t = translator(negotiate(user.language_code))
            await message.reply_text(
                t._("Let's talk in a private chat: tap my name and press Start.")
            )
        raise ApplicationHandlerStop
    person = person_of(update)
    assert person is not None  # a chat was checked above
    context.profile, context.t = await find_profile(context.services, person)


def _is_our_command(text: str | None, username: str | None) -> bool:
    """A command in a group, unless it is addressed to another bot (``/help@OtherBot``)."""
    if not text or not text.startswith("/"):
        return False
    _, at, addressee = text.split(maxsplit=1)[0].partition("@")
    return not at or addressee.lower() == (username or "").lower()
