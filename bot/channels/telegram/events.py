"""A Telegram update as one neutral event (``bot.chat.events``), or None when no feature is
meant to see it (stickers, service messages: the legacy fallback answers those)."""

from __future__ import annotations

from telegram import Bot, Update

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
    """``/name@bot args`` as (name, args); None when addressed to another bot."""
    head, *args = text.split()
    name, at, addressee = head[1:].partition("@")
    if at and addressee.lower() != (username or "").lower():
        return None
    if not name:
        return None
    return name.lower(), tuple(args)


def _photo_fetcher(bot: Bot, file_id: str) -> PhotoFetch:
    async def fetch() -> bytes:
        file = await bot.get_file(file_id)
        return bytes(await file.download_as_bytearray())

    return fetch


def event_of(update: Update, bot: Bot) -> Event | None:
    person = person_of(update)
    if person is None:
        return None
    query = update.callback_query
    if query is not None:
        ref = None
        if query.message is not None:
            ref = f"{query.message.chat.id}:{query.message.message_id}"
        return Choice(person, query.data or "", None, ref)
    message = update.message
    if message is None:
        return None
    if message.location is not None:
        return Location(person, message.location.latitude, message.location.longitude)
    if message.photo:
        return Photo(person, _photo_fetcher(bot, message.photo[-1].file_id), message.caption)
    text = message.text
    if text is None:
        return None
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
