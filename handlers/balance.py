"""/balance: points and their value at today's point price, vouchers, recent movements."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import callbacks, formatting
from bot.context import App, GPContext
from bot.i18n import Translator
from bot.members import member_id
from ledger_client.models import Activity, Balance, Price

HISTORY = "bal"
PAGE = 5


def price_text(t: Translator, price: Price) -> str:
    """The point price in yuan per point: a reported ratio, never a promised return."""
    per_point = Decimal(price.fen_per_point).scaleb(-2)
    return format_currency(
        per_point, "CNY", format="¤#,##0.0000", currency_digits=False, locale=t.babel
    )


def activity_line(t: Translator, item: Activity) -> str:
    day = formatting.day(t, item.at)
    shop = item.merchant_name or ""
    if item.type == "points.earned":
        return t._("{day} · +{points} points · {shop} ({amount})").format(
            day=day,
            points=formatting.number(t, item.points),
            shop=shop,
            amount=formatting.money(t, item.amount_fen),
        )
    if item.type == "voucher.granted":
        return t._("{day} · vouchers +{vouchers} (−{points} points)").format(
            day=day,
            vouchers=formatting.money(t, item.vouchers_fen),
            points=formatting.number(t, -item.points),
        )
    return t._("{day} · vouchers used {vouchers} at {shop} · +{points} points").format(
        day=day,
        vouchers=formatting.money(t, -item.vouchers_fen),
        shop=shop,
        points=formatting.number(t, item.points),
    )


def history_keyboard(t: Translator, before: int | None) -> InlineKeyboardMarkup | None:
    if before is None:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(t._("More history"), callback_data=callbacks.pack(HISTORY, before))]]
    )


def balance_text(t: Translator, balance: Balance) -> str:
    lines = [
        t._("💚 Your green consumption points"),
        t._("Points: {points}").format(points=formatting.number(t, balance.points)),
        t._("Worth {value} at today's point price of {price} per point.").format(
            value=formatting.money(t, balance.points_value_fen),
            price=price_text(t, balance.price),
        ),
        t._("The point price is pool ÷ points in circulation; it moves and is not a promise."),
        "",
    ]
    if balance.vouchers_fen and balance.nearest_expiry is not None:
        lines.append(
            t._("Vouchers: {vouchers} — {soonest} of them expire on {day}.").format(
                vouchers=formatting.money(t, balance.vouchers_fen),
                soonest=formatting.money(t, balance.nearest_expiry_fen),
                day=formatting.day(t, balance.nearest_expiry),
            )
        )
    else:
        lines.append(
            t._("Vouchers: none yet. Each day a small part of your points turns into vouchers.")
        )
    if balance.activity:
        lines += ["", t._("Recent:")] + [f"• {activity_line(t, a)}" for a in balance.activity]
    return "\n".join(lines)


async def show_balance(update: Update, context: GPContext) -> None:
    assert update.effective_message is not None
    t = context.t
    balance = await context.services.ledger.balance(await member_id(context), limit=PAGE)
    await update.effective_message.reply_text(
        balance_text(t, balance), reply_markup=history_keyboard(t, balance.activity_next_before)
    )


async def more_history(update: Update, context: GPContext) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    parts = callbacks.unpack(query.data, HISTORY, 1)
    before = callbacks.as_int(parts[0], 1, 2**62) if parts else None
    if before is None:
        await query.answer(t._("This button has expired."))
        return
    page = await context.services.ledger.balance(await member_id(context), PAGE, before)
    await query.answer()
    text = "\n".join(f"• {activity_line(t, a)}" for a in page.activity) or t._(
        "No earlier movements."
    )
    assert query.message is not None
    await context.bot.send_message(
        query.message.chat.id, text, reply_markup=history_keyboard(t, page.activity_next_before)
    )


def register(app: App) -> None:
    app.add_handler(CommandHandler("balance", show_balance))
    app.add_handler(CallbackQueryHandler(more_history, pattern=callbacks.pattern(HISTORY)))
