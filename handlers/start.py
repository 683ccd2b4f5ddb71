"""/start (with or without a deep-link payload) and /help."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CommandHandler

from bot.context import App, GPContext
from bot.i18n import Translator
from bot.members import resolve
from bot.menus import refresh_person_menu
from handlers.merchant import open_deep_link


def help_text(t: Translator) -> str:
    return "\n".join(
        [
            t._("Here is what I can do:"),
            "",
            t._("/balance — your points, their value and your vouchers"),
            t._("/nearby — alliance merchants within a 15-minute walk"),
            t._("/qr — a redemption code to show at the till"),
            t._("/language — 简体中文 · 繁體中文 · English"),
            t._("/settings — voucher and points notices on or off"),
            "",
            t._(
                "Points come only from purchases at alliance merchants; "
                "they cannot be bought, sold or given to others."
            ),
        ]
    )


async def start(update: Update, context: GPContext) -> None:
    message = update.effective_message
    assert message is not None
    payload = context.args[0] if context.args else ""
    if payload and await open_deep_link(update, context, payload):
        return
    t = context.t
    services = context.services
    _member, created = await resolve(context)
    profile = context.need_profile()
    # Asked before anything is said, so a ledger outage gets one "try again" and no half reply.
    staff = await services.ledger.staff_lookup(*profile.identity) is not None
    name = profile.display_name
    if created:
        greeting = (
            t._("Welcome to Green Points, {name}!").format(name=name)
            if name
            else t._("Welcome to Green Points!")
        )
    else:
        greeting = t._("Welcome back, {name}!").format(name=name) if name else t._("Welcome back!")
    lines = [greeting]
    if payload:
        lines.insert(0, t._("That link is not one I know, so here is the start instead."))
    lines += [
        t._(
            "Earn green consumption points at every alliance merchant and turn them into "
            "vouchers that any alliance merchant accepts."
        ),
        "",
        help_text(t),
    ]
    await message.reply_text("\n".join(lines))
    await refresh_person_menu(context, staff=staff)


async def help_command(update: Update, context: GPContext) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(help_text(context.t))


def register(app: App) -> None:
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("help", help_command))
