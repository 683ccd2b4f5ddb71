"""A Telegram update as one neutral event (``bot.chat.events``), or None when no feature is
meant to see it (service messages, updates without a chat)."""

from __future__ import annotations

from telegram import Bot, Update
from telegram.error import TelegramError
from telegram.ext import filters

from bot.chat.channel import ChannelError
from bot.chat.events import (
    Choice,
    Command,
    Event,
    Location,
    Person,
    Photo,
    PhotoFetch,
    Scan,
    Text,
)

CHANNEL = "telegram"


def person_of(update: Update) -> Person | None:
    chat, user = update.effective_chat, update.effective_user
    if chat is None:
        return None
    return Person(
        CHANNEL,
        str(chat.id),
        user.full_name if user else None,
        user.language_code if user else None,
    )


def _command(text: str, username: str | None) -> tuple[str, tuple[str, ...]] | None:
    """``/name@bot args`` as (name, args); a command addressed to another bot keeps its
    ``@addressee`` so no feature takes it (it is answered as unknown)."""
    head, *args = text.split()
    name, at, addressee = head[1:].partition("@")
    if at and addressee.lower() != (username or "").lower():
        return f"{name}@{addressee}".lower(), tuple(args)
    if not name:
        return None
    return name.lower(), tuple(args)


def _photo_fetcher(bot: Bot, file_id: str) -> PhotoFetch:
    async def fetch() -> bytes:
        try:
            file = await bot.get_file(file_id)
            # getFile may answer without a path (a file the Bot API cannot hand over), and
            # then python-telegram-bot raises RuntimeError, not a TelegramError.
            if not file.file_path:
                raise ChannelError("getFile gave no path for a photo")
            return bytes(await file.download_as_bytearray())
        except TelegramError as exc:
            raise ChannelError(f"could not download a photo: {exc}") from exc

    return fetch


def event_of(update: Update, bot: Bot) -> Event | None:
    person = person_of(update)
    if person is None:
        return None
    query = update.callback_query
    if query is not None:
        message_id = query.message.message_id if query.message is not None else None
        return Choice(person, query.data or "", None, message_id, query.id)
    message = update.message
    if message is None:
        return None
    if message.location is not None:
        return Location(person, message.location.latitude, message.location.longitude)
    if message.photo:
        file_id = message.photo[-1].file_id
        return Photo(person, _photo_fetcher(bot, file_id), message.caption, file_id)
    text = message.text
    if text is None:
        # A sticker, a voice note, a document: the person said something we cannot read (an
        # empty text, answered by the fallback). Service messages (a pin, a timer) get nothing.
        if filters.StatusUpdate.ALL.check_update(update):
            return None
        return Text(person, "")
    entities = message.entities
    if (
        text.startswith("/")
        and entities
        and entities[0].type == "bot_command"
        and (entities[0].offset == 0)
    ):
        parsed = _command(text, bot.username if bot.username else None)
        if parsed is None:
            return None
        name, args = parsed
        if name == "start" and args:
            return Scan(person, args[0], "deep_link")
        return Command(person, name, args)
    return Text(person, text)
