"""Neutral replies as Bot API calls, within Telegram's limits (``bot.chat.channel.TELEGRAM``).

A text longer than 4,096 characters is split on line ends (choices go under its last part); a
reply that ``replaces`` edits the message whose button was tapped; the first toast answers the
tap (every tap is answered exactly once, so the client's spinner stops); a place is a venue; an
ask-for-location is a one-tap reply keyboard.
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from telegram.error import BadRequest

from bot.chat.channel import TELEGRAM
from bot.chat.replies import (
    AskLocation,
    ChoiceRows,
    Picture,
    Place,
    Reply,
    TextReply,
    Toast,
)
from bot.chat.splitting import shorten, split

CAPS = TELEGRAM
ANSWER_MAX = 200  # answerCallbackQuery text
VENUE_FIELD_MAX = 256  # venue title and address (kept short; the Bot API gives no figure)
BUTTON_MAX = 64


def keyboard(choices: ChoiceRows) -> InlineKeyboardMarkup | None:
    lines = [
        [
            InlineKeyboardButton(shorten(c.label, BUTTON_MAX) or "·", callback_data=c.data)
            for c in line
        ]
        for line in choices
        if line
    ]
    return InlineKeyboardMarkup(lines) if lines else None


async def _edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> bool:
    """Edit the tapped message; False when it cannot be edited (too old, gone), so the caller
    sends a new one instead. A second tap that would change nothing is fine."""
    try:
        await query.edit_message_text(text, reply_markup=markup)
    except BadRequest as exc:
        if "not modified" in str(exc).lower():
            return True
        if "can't be edited" in str(exc).lower() or "not found" in str(exc).lower():
            return False
        raise
    return True


async def _text(bot: Bot, chat_id: int, reply: TextReply, query: CallbackQuery | None) -> None:
    parts = split(reply.text, CAPS.text_limit, CAPS.text_unit) if reply.text.strip() else []
    if not parts:
        return
    markup = keyboard(reply.choices)
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        part_markup = markup if last else None
        editable = n == 0 and reply.replaces and query is not None and query.message is not None
        if editable and query is not None and await _edit(query, part, part_markup):
            continue
        await bot.send_message(chat_id, part, reply_markup=part_markup)


async def _picture(bot: Bot, chat_id: int, reply: Picture, query: CallbackQuery | None) -> None:
    caption = shorten(reply.caption, CAPS.caption_limit) if reply.caption else None
    markup = keyboard(reply.choices)
    if reply.replaces and query is not None and query.message is not None:
        try:
            await query.edit_message_media(
                InputMediaPhoto(reply.file_ref or reply.png, caption=caption),
                reply_markup=markup,
            )
            return
        except BadRequest as exc:
            if "not modified" in str(exc).lower():
                return
            if "can't be edited" not in str(exc).lower() and "not found" not in str(exc).lower():
                raise
    await bot.send_photo(chat_id, reply.file_ref or reply.png, caption=caption, reply_markup=markup)


async def render(
    bot: Bot, chat_id: int, replies: Sequence[Reply], query: CallbackQuery | None = None
) -> None:
    """Send ``replies`` to ``chat_id`` in order. A tap (``query``) is answered once: by the
    first toast, where it stands in the list (a feature that wants the spinner to stop only once
    the outcome is readable puts its toast last), or before everything when there is none."""
    answered = False
    if query is not None and not any(isinstance(r, Toast) for r in replies):
        await query.answer()
        answered = True
    for reply in replies:
        if isinstance(reply, TextReply):
            await _text(bot, chat_id, reply, query)
        elif isinstance(reply, Toast):
            if query is None:  # a toast outside a tap has nothing to pop up on: say it
                if reply.text.strip():
                    await bot.send_message(chat_id, shorten(reply.text, CAPS.text_limit))
            elif not answered:
                text = shorten(reply.text, ANSWER_MAX) if reply.text else None
                await query.answer(text, show_alert=reply.alert)
                answered = True
        elif isinstance(reply, Picture):
            await _picture(bot, chat_id, reply, query)
        elif isinstance(reply, Place):
            await bot.send_venue(
                chat_id,
                reply.lat,
                reply.lon,
                shorten(reply.name, VENUE_FIELD_MAX) or "·",
                shorten(reply.address, VENUE_FIELD_MAX) or "·",
            )
        elif isinstance(reply, AskLocation):
            button = KeyboardButton(reply.button, request_location=True)
            await bot.send_message(
                chat_id,
                shorten(reply.prompt, CAPS.text_limit),
                reply_markup=ReplyKeyboardMarkup(
                    [[button]], resize_keyboard=True, one_time_keyboard=True
                ),
            )
    if query is not None and not answered:
        await query.answer()
