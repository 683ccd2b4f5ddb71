"""Everything no feature command took: pending conversations first, then a helpful reply.

Registered last in the default group, so these run only when no other handler matched.
Service messages (a pin, an auto-delete timer, "allowed to write", a web app's data) are
Telegram reporting that something happened, not the person talking to the bot, so they get no
reply: answering "I can't chat much" to someone who pinned a message would be nonsense.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackQueryHandler, MessageHandler, filters

from bot import inbox
from bot.context import App, GPContext


async def unknown_command(update: Update, context: GPContext) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        context.t._("I don't know that command. /help shows what I can do.")
    )


async def anything_else(update: Update, context: GPContext) -> None:
    message = update.effective_message
    assert message is not None
    if (message.text or message.photo) and await inbox.route(update, context):
        return
    t = context.t
    if message.photo:
        text = t._(
            "Thanks for the picture! Only alliance staff can scan codes from photos. "
            "/qr shows your own code."
        )
    else:
        text = t._(
            "I'm a points bot, so I can't chat much. /balance, /nearby and /qr are "
            "what people use most; /help lists everything."
        )
    await message.reply_text(text)


async def stale_button(update: Update, context: GPContext) -> None:
    assert update.callback_query is not None
    await update.callback_query.answer(context.t._("This button has expired."))


def register(app: App) -> None:
    app.add_handler(MessageHandler(filters.COMMAND, unknown_command))
    app.add_handler(MessageHandler(filters.ALL & ~filters.StatusUpdate.ALL, anything_else))
    app.add_handler(CallbackQueryHandler(stale_button))
