"""/language and /settings: the person's language and whether the bot may speak first."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import callbacks
from bot.context import App, GPContext
from bot.i18n import LOCALES, Translator, translator
from bot.menus import refresh_person_menu

LANGUAGE = "lang"
NOTICES = "ntc"
NAMES = {"zh_Hans": "简体中文", "zh_Hant": "繁體中文", "en": "English"}


def language_keyboard(current: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    ("✓ " if code == current else "") + NAMES[code],
                    callback_data=callbacks.pack(LANGUAGE, code),
                )
                for code in LOCALES
            ]
        ]
    )


async def language(update: Update, context: GPContext) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        context.t._("Choose your language:"),
        reply_markup=language_keyboard(context.need_profile().locale),
    )


async def choose_language(update: Update, context: GPContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = callbacks.unpack(query.data, LANGUAGE, 1)
    if not parts or parts[0] not in LOCALES:
        await query.answer(context.t._("This button has expired."))
        return
    services = context.services
    current = context.need_profile()
    # The ledger is asked first: if it is down, nothing has changed yet and the person is told
    # to try again, rather than being left with a half-switched language.
    if current.member_id is not None:
        await services.ledger.update_member(current.member_id, locale=parts[0])
    staff = await services.ledger.staff_lookup(*current.identity) is not None
    profile = await services.chats.set_locale(current.chat_id, parts[0])
    assert profile is not None
    context.profile, context.t = profile, translator(profile.locale)
    await query.answer()
    await callbacks.edit_text(
        query,
        context.t._("I will speak {language} from now on.").format(language=NAMES[profile.locale]),
    )
    await refresh_person_menu(context, staff=staff)


def notices_keyboard(t: Translator, on: bool) -> InlineKeyboardMarkup:
    label = t._("Turn notices off") if on else t._("Turn notices on")
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=callbacks.pack(NOTICES, int(not on)))]]
    )


def settings_text(t: Translator, on: bool) -> str:
    """Whole sentences per state, so no language has to fit "on" or "off" into a slot."""
    state = t._("Notices are on.") if on else t._("Notices are off.")
    return "\n".join(
        [
            state,
            t._(
                "With notices on I tell you when vouchers are granted, used or about to "
                "expire, and when a purchase earns you points."
            ),
        ]
    )


async def settings(update: Update, context: GPContext) -> None:
    assert update.effective_message is not None
    on = context.need_profile().notices
    await update.effective_message.reply_text(
        settings_text(context.t, on), reply_markup=notices_keyboard(context.t, on)
    )


async def toggle_notices(update: Update, context: GPContext) -> None:
    query = update.callback_query
    assert query is not None
    parts = callbacks.unpack(query.data, NOTICES, 1)
    if not parts or parts[0] not in {"0", "1"}:
        await query.answer(context.t._("This button has expired."))
        return
    on = parts[0] == "1"
    await context.services.chats.set_notices(context.need_profile().chat_id, on)
    await query.answer()
    await callbacks.edit_text(query, settings_text(context.t, on), notices_keyboard(context.t, on))


def register(app: App) -> None:
    app.add_handler(CommandHandler("language", language))
    app.add_handler(CommandHandler("settings", settings))
    app.add_handler(CallbackQueryHandler(choose_language, pattern=callbacks.pattern(LANGUAGE)))
    app.add_handler(CallbackQueryHandler(toggle_notices, pattern=callbacks.pattern(NOTICES)))
