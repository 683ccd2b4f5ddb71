"""Telegram as a ``bot.chat.channel.Channel``: neutral replies as Bot API calls, within
Telegram's limits (``bot.chat.channel.TELEGRAM``).

A text longer than 4,096 characters is split on line ends (choices go under its last part); a
reply that ``replaces`` edits the message whose button was tapped; the first toast answers the
tap (every tap is answered exactly once, so the client's spinner stops); a place is a venue; an
ask-for-location is a one-tap reply keyboard.
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaPhoto,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from telegram.error import BadRequest

from bot.chat.channel import TELEGRAM, Capabilities
from bot.chat.events import Choice, Event, Person
from bot.chat.i18n import translator
from bot.chat.replies import (
    AskLocation,
    ChoiceRows,
    Document,
    Notice,
    Picture,
    Place,
    Reply,
    TextReply,
    Toast,
)
from bot.chat.splitting import shorten, split
from bot.outbox.notices import notice_text

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


def _gone(exc: BadRequest) -> bool:
    """The message to edit cannot be edited (too old) or is gone: send a new one instead."""
    text = str(exc).lower()
    return "can't be edited" in text or "not found" in text


def _unchanged(exc: BadRequest) -> bool:
    """A second tap that would change nothing: fine."""
    return "not modified" in str(exc).lower()


class TelegramChannel:
    """The Bot API through python-telegram-bot's ``Bot`` (the application's, with its rate
    limiter). One per application; the person's chat id is their address."""

    capabilities: Capabilities = CAPS

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def answer(self, event: Event, replies: Sequence[Reply]) -> None:
        """Send ``replies`` to the event's chat in order. A tap (a ``Choice`` with its
        ``tap_id``) is answered once: by the first toast, where it stands in the list (a feature
        that wants the spinner to stop only once the outcome is readable puts its toast last), or
        before everything when there is none. A reply that ``replaces`` edits the tapped message
        (``Choice.message_id``) when it still can be edited."""
        chat_id = int(event.person.address)
        tap = event.tap_id if isinstance(event, Choice) else None
        tapped = event.message_id if isinstance(event, Choice) else None
        answered = False
        if tap is not None and not any(isinstance(r, Toast) for r in replies):
            await self.bot.answer_callback_query(tap)
            answered = True
        for reply in replies:
            if isinstance(reply, Toast):
                if tap is None:  # a toast outside a tap has nothing to pop up on: say it
                    if reply.text.strip():
                        await self.bot.send_message(chat_id, shorten(reply.text, CAPS.text_limit))
                elif not answered:
                    text = shorten(reply.text, ANSWER_MAX) if reply.text else None
                    await self.bot.answer_callback_query(tap, text, show_alert=reply.alert)
                    answered = True
            else:
                await self._one(chat_id, reply, tapped if tap is not None else None)
        if tap is not None and not answered:
            await self.bot.answer_callback_query(tap)

    async def send(self, person: Person, replies: Sequence[Reply]) -> None:
        """Replies nobody's tap asked for (a toast is said as a text)."""
        chat_id = int(person.address)
        for reply in replies:
            if isinstance(reply, Toast):
                if reply.text.strip():
                    await self.bot.send_message(chat_id, shorten(reply.text, CAPS.text_limit))
            else:
                await self._one(chat_id, reply, None)

    async def notify(self, person: Person, notice: Notice, locale: str) -> None:
        """A stored notice as the text every channel without templates shows."""
        text = notice_text(notice, translator(locale))
        if text:
            await self.send(person, [TextReply(text)])

    async def _one(self, chat_id: int, reply: Reply, tapped: int | None) -> None:
        if isinstance(reply, TextReply):
            await self._text(chat_id, reply, tapped)
        elif isinstance(reply, Picture):
            await self._picture(chat_id, reply, tapped)
        elif isinstance(reply, Document):
            caption = shorten(reply.caption, CAPS.caption_limit) if reply.caption else None
            await self.bot.send_document(
                chat_id, InputFile(reply.data, filename=reply.filename), caption=caption
            )
        elif isinstance(reply, Place):
            await self.bot.send_venue(
                chat_id,
                reply.lat,
                reply.lon,
                shorten(reply.name, VENUE_FIELD_MAX) or "·",
                shorten(reply.address, VENUE_FIELD_MAX) or "·",
            )
        elif isinstance(reply, AskLocation):
            button = KeyboardButton(reply.button, request_location=True)
            await self.bot.send_message(
                chat_id,
                shorten(reply.prompt, CAPS.text_limit),
                reply_markup=ReplyKeyboardMarkup(
                    [[button]], resize_keyboard=True, one_time_keyboard=True
                ),
            )

    async def _edit(
        self, chat_id: int, message_id: int, text: str, markup: InlineKeyboardMarkup | None
    ) -> bool:
        """Edit the tapped message; False when it cannot be edited (too old, gone), so the
        caller sends a new one instead."""
        try:
            await self.bot.edit_message_text(
                text, chat_id=chat_id, message_id=message_id, reply_markup=markup
            )
        except BadRequest as exc:
            if _unchanged(exc):
                return True
            if _gone(exc):
                return False
            raise
        return True

    async def _text(self, chat_id: int, reply: TextReply, tapped: int | None) -> None:
        parts = split(reply.text, CAPS.text_limit, CAPS.text_unit) if reply.text.strip() else []
        if not parts:
            return
        markup = keyboard(reply.choices)
        for n, part in enumerate(parts):
            part_markup = markup if n == len(parts) - 1 else None
            editable = n == 0 and reply.replaces and tapped is not None
            if editable and tapped is not None and await self._edit(
                chat_id, tapped, part, part_markup
            ):
                continue
            await self.bot.send_message(chat_id, part, reply_markup=part_markup)

    async def _picture(self, chat_id: int, reply: Picture, tapped: int | None) -> None:
        caption = shorten(reply.caption, CAPS.caption_limit) if reply.caption else None
        markup = keyboard(reply.choices)
        if reply.replaces and tapped is not None:
            try:
                await self.bot.edit_message_media(
                    InputMediaPhoto(reply.file_ref or reply.png, caption=caption),
                    chat_id=chat_id,
                    message_id=tapped,
                    reply_markup=markup,
                )
                return
            except BadRequest as exc:
                if _unchanged(exc):
                    return
                if not _gone(exc):
                    raise
        await self.bot.send_photo(
            chat_id, reply.file_ref or reply.png, caption=caption, reply_markup=markup
        )
