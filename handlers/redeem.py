"""/qr: the member's redemption code, as a QR to show at the till and as 20 digits to type."""

from __future__ import annotations

import datetime as dt

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import callbacks, formatting, qr
from bot.context import App, GPContext
from bot.i18n import Translator
from bot.members import member_id
from ledger_client.models import RedemptionCode

FRESH = "qr"


def grouped(digits: str) -> str:
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def minutes_left(expires_at: dt.datetime) -> int:
    """Whole minutes until ``expires_at`` (naive means UTC, as the ledger writes it)."""
    aware = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=dt.UTC)
    return max(1, round((aware - dt.datetime.now(dt.UTC)).total_seconds() / 60))


def caption(t: Translator, code: RedemptionCode) -> str:
    minutes = minutes_left(code.expires_at)
    lines = [
        t._("Show this code at the till of any alliance merchant."),
        t._("Code: {digits}").format(digits=grouped(code.numeric_code)),
        t._("Valid until {time} ({minutes} min), for one purchase.").format(
            time=formatting.clock(t, code.expires_at), minutes=minutes
        ),
    ]
    if code.vouchers_fen:
        lines.append(
            t._("It can apply up to {vouchers} of vouchers, within each merchant's cap.").format(
                vouchers=formatting.money(t, code.vouchers_fen)
            )
        )
    else:
        lines.append(t._("You have no vouchers yet; the code still earns you points."))
    return "\n".join(lines)


def keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(t._("🔄 New code"), callback_data=callbacks.pack(FRESH, "new"))]]
    )


async def _fresh(context: GPContext) -> tuple[bytes, str]:
    code = await context.services.ledger.issue_code(await member_id(context))
    image = qr.png(context.services.deep_link(code.link_code))
    return image, caption(context.t, code)


async def show_code(update: Update, context: GPContext) -> None:
    assert update.effective_message is not None
    image, text = await _fresh(context)
    await update.effective_message.reply_photo(
        image, caption=text, reply_markup=keyboard(context.t)
    )


async def new_code(update: Update, context: GPContext) -> None:
    query = update.callback_query
    assert query is not None
    if callbacks.unpack(query.data, FRESH, 1) != ["new"]:
        await query.answer(context.t._("This button has expired."))
        return
    image, text = await _fresh(context)
    await query.answer(context.t._("Here is a new code; the old one no longer works."))
    await query.edit_message_media(
        InputMediaPhoto(image, caption=text), reply_markup=keyboard(context.t)
    )


def register(app: App) -> None:
    app.add_handler(CommandHandler("qr", show_code))
    app.add_handler(CallbackQueryHandler(new_code, pattern=callbacks.pattern(FRESH)))
