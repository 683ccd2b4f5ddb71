"""Admins: /broadcast (compose, audience, preview, confirm), /broadcasts, /stats.

Admin powers are checked on every update against ``GREENPOINTS_ADMIN_IDS``, buttons included,
so a forwarded or stale button does nothing for anyone else.
"""

from __future__ import annotations

import datetime as dt
import secrets

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import callbacks, formatting, inbox
from bot.broadcast_runner import progress_text, runner
from bot.broadcasts import EVERYONE, Broadcasts, Progress
from bot.context import App, GPContext
from bot.i18n import N_, Translator
from bot.storage.flows import Pending
from handlers.balance import price_text

COMPOSE = "broadcast"
AUDIENCE = "bca"
SEND = "bcs"
STOP = "bcx"
TTL = dt.timedelta(minutes=30)
MAX_TEXT = 4096
MAX_CAPTION = 1024
AUDIENCES = {
    EVERYONE: N_("Everyone"),
    "zh_Hans": N_("简体中文 readers"),
    "zh_Hant": N_("繁體中文 readers"),
    "en": N_("English readers"),
}
STATES = {
    "enqueuing": N_("adding recipients"),
    "sending": N_("sending"),
    "done": N_("finished"),
    "cancelled": N_("cancelled"),
}


def refused(t: Translator) -> str:
    return t._("Sorry, that is only for alliance administrators.")


async def _admin(update: Update, context: GPContext) -> bool:
    """True for an admin; everyone else is told politely (a button gets a toast)."""
    if context.services.is_admin(context.need_profile().chat_id):
        return True
    if update.callback_query is not None:
        await update.callback_query.answer(refused(context.t), show_alert=True)
    elif update.effective_message is not None:
        await update.effective_message.reply_text(refused(context.t))
    return False


async def broadcast(update: Update, context: GPContext) -> None:
    if not await _admin(update, context):
        return
    assert update.effective_message is not None
    t = context.t
    await context.services.flows.start(
        context.need_profile().chat_id, COMPOSE, {"step": "content"}, TTL
    )
    await update.effective_message.reply_text(
        t._("Send me the announcement: a text, or one photo with a caption. /cancel stops.")
    )


async def _on_content(update: Update, context: GPContext, pending: Pending) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    if not context.services.is_admin(context.need_profile().chat_id):
        await context.services.flows.finish(context.need_profile().chat_id, COMPOSE)
        await message.reply_text(refused(t))
        return
    if pending.data.get("step") != "content":
        await message.reply_text(t._("Choose the audience with the buttons above, or /cancel."))
        return
    photo = message.photo[-1].file_id if message.photo else None
    # A NUL shows as nothing anywhere, and PostgreSQL cannot store it: the announcement would
    # fail only when Send is tapped, after the admin approved it.
    text = ((message.caption if photo else message.text) or "").replace("\x00", "")
    limit = MAX_CAPTION if photo else MAX_TEXT
    if not text.strip() or len(text) > limit:
        await message.reply_text(
            t._("An announcement needs text of at most {limit} characters. Try again.").format(
                limit=limit
            )
        )
        return
    nonce = secrets.token_hex(4)
    chat_id = context.need_profile().chat_id
    await context.services.flows.start(
        chat_id, COMPOSE, {"step": "audience", "text": text, "photo": photo, "nonce": nonce}, TTL
    )
    counts = await Broadcasts(context.services.db).audience_sizes()
    rows = [
        [
            InlineKeyboardButton(
                f"{t._(label)} ({formatting.number(t, counts.get(code, 0))})",
                callback_data=callbacks.pack(AUDIENCE, code, nonce),
            )
        ]
        for code, label in AUDIENCES.items()
    ]
    await message.reply_text(t._("Who should get it?"), reply_markup=InlineKeyboardMarkup(rows))


async def _tapped(
    context: GPContext,
    query: CallbackQuery,
    chat_id: int,
    prefix: str,
    choices: set[str],
    step: str,
) -> tuple[str, Pending] | None:
    """The choice a composer's button carries, if it belongs to the step the composer is at.

    A button from an older composition (its nonce), from an earlier step, or forged, is
    answered as expired and yields None.
    """
    parts = callbacks.unpack(query.data, prefix, 2)
    pending = await context.services.flows.get(chat_id)
    if (
        parts is None
        or parts[0] not in choices
        or pending is None
        or pending.kind != COMPOSE
        or pending.data.get("nonce") != parts[1]
        or pending.data.get("step") != step
    ):
        await query.answer(context.t._("This button has expired."))
        return None
    return parts[0], pending


async def choose_audience(update: Update, context: GPContext) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None
    if not await _admin(update, context):
        return
    t = context.t
    chat_id = context.need_profile().chat_id
    tapped = await _tapped(context, query, chat_id, AUDIENCE, set(AUDIENCES), "audience")
    if tapped is None:
        return
    audience, pending = tapped
    size = await Broadcasts(context.services.db).audience_size(audience)
    data = {**pending.data, "step": "confirm", "audience": audience}
    await context.services.flows.start(chat_id, COMPOSE, data, TTL)
    await query.answer()
    await query.edit_message_text(t._("Here is exactly what they will see:"))
    if data["photo"]:
        await context.bot.send_photo(chat_id, data["photo"], caption=data["text"])
    else:
        await context.bot.send_message(chat_id, data["text"])
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t._("Send"), callback_data=callbacks.pack(SEND, "ok", data["nonce"])
                ),
                InlineKeyboardButton(
                    t._("Cancel"), callback_data=callbacks.pack(SEND, "no", data["nonce"])
                ),
            ]
        ]
    )
    await context.bot.send_message(
        chat_id,
        t._("Send this announcement to {count} people ({audience})?").format(
            count=formatting.number(t, size), audience=t._(AUDIENCES[audience])
        ),
        reply_markup=keyboard,
    )


async def confirm(update: Update, context: GPContext) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None
    if not await _admin(update, context):
        return
    t = context.t
    chat_id = context.need_profile().chat_id
    tapped = await _tapped(context, query, chat_id, SEND, {"ok", "no"}, "confirm")
    if tapped is None:
        return
    choice, pending = tapped
    # Finishing the flow first makes a double tap on Send start one broadcast, not two.
    if not await context.services.flows.finish(chat_id, COMPOSE):
        await query.answer(t._("This button has expired."))
        return
    await query.answer()
    if choice == "no":
        await query.edit_message_text(t._("Cancelled; nothing was sent."))
        return
    data = pending.data
    broadcasts = Broadcasts(context.services.db)
    broadcast_id = await broadcasts.create(chat_id, data["text"], data["photo"], data["audience"])
    # Enqueueing starts before the admin sees the progress message: whoever sees it (a test's
    # settle, too) can count on the audience being on its way into the outbox.
    runner(context.application).launch(broadcast_id)
    progress = await broadcasts.progress(broadcast_id)
    assert progress is not None
    await query.edit_message_text(progress_text(t, progress))
    await broadcasts.set_progress_message(broadcast_id, query.message.message_id)


async def cancel_compose(update: Update, context: GPContext) -> None:
    assert update.effective_message is not None
    chat_id = context.need_profile().chat_id
    if await context.services.flows.finish(chat_id):
        await update.effective_message.reply_text(context.t._("Cancelled."))
    else:
        await update.effective_message.reply_text(context.t._("There is nothing to cancel."))


def _line(t: Translator, p: Progress) -> str:
    return t._(
        "#{id} · {state} · {sent}/{total} sent · {blocked} blocked · {failed} failed\n   {preview}"
    ).format(
        id=p.id,
        state=t._(STATES.get(p.state, p.state)),
        sent=formatting.number(t, p.sent),
        total=formatting.number(t, p.total),
        blocked=formatting.number(t, p.blocked),
        failed=formatting.number(t, p.failed),
        preview=p.text[:60].replace("\n", " "),
    )


async def list_broadcasts(update: Update, context: GPContext) -> None:
    if not await _admin(update, context):
        return
    assert update.effective_message is not None
    t = context.t
    recent = await Broadcasts(context.services.db).recent()
    if not recent:
        await update.effective_message.reply_text(
            t._("No announcements yet. /broadcast starts one.")
        )
        return
    running = [p for p in recent if p.state in {"enqueuing", "sending"}]
    keyboard = (
        InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        t._("Cancel #{id}").format(id=p.id),
                        callback_data=callbacks.pack(STOP, p.id),
                    )
                ]
                for p in running
            ]
        )
        if running
        else None
    )
    await update.effective_message.reply_text(
        "\n".join([t._("Recent announcements:")] + [_line(t, p) for p in recent]),
        reply_markup=keyboard,
    )


async def stop_broadcast(update: Update, context: GPContext) -> None:
    query = update.callback_query
    assert query is not None
    if not await _admin(update, context):
        return
    t = context.t
    parts = callbacks.unpack(query.data, STOP, 1)
    broadcast_id = callbacks.as_int(parts[0], 1, 2**62) if parts else None
    if broadcast_id is None:
        await query.answer(t._("This button has expired."))
        return
    broadcasts = Broadcasts(context.services.db)
    if not await broadcasts.cancel(broadcast_id):
        await query.answer(t._("That announcement is not running."), show_alert=True)
        return
    await query.answer(t._("Cancelled."))
    progress = await broadcasts.progress(broadcast_id)
    if progress is not None:
        await runner(context.application).show(progress)


async def stats(update: Update, context: GPContext) -> None:
    if not await _admin(update, context):
        return
    assert update.effective_message is not None
    t = context.t
    figures = await context.services.ledger.stats()
    lines = [
        t._("Alliance figures"),
        t._("Members: {n}").format(n=formatting.number(t, figures.members)),
        t._("Active in the last 7 days: {n}").format(n=formatting.number(t, figures.active_7d)),
        t._("Alliance merchants: {n}").format(n=formatting.number(t, figures.merchants)),
        t._("Points outstanding: {n}").format(n=formatting.number(t, figures.points_outstanding)),
        t._("Vouchers outstanding: {amount}").format(
            amount=formatting.money(t, figures.vouchers_outstanding_fen)
        ),
        t._("Points pool: {amount}").format(amount=formatting.money(t, figures.pool_fen)),
        t._("Point price: {price} per point").format(price=price_text(t, figures.price)),
    ]
    await update.effective_message.reply_text("\n".join(lines))


def register(app: App) -> None:
    app.add_handler(CommandHandler("broadcast", broadcast))
    app.add_handler(CommandHandler("broadcasts", list_broadcasts))
    app.add_handler(CommandHandler("stats", stats))
    app.add_handler(CommandHandler("cancel", cancel_compose))
    app.add_handler(CallbackQueryHandler(choose_audience, pattern=callbacks.pattern(AUDIENCE)))
    app.add_handler(CallbackQueryHandler(confirm, pattern=callbacks.pattern(SEND)))
    app.add_handler(CallbackQueryHandler(stop_broadcast, pattern=callbacks.pattern(STOP)))
    inbox.on_flow(COMPOSE, _on_content)
