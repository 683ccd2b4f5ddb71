"""Merchant staff: invites, scanning customers' codes, bill, preview, confirm; /today.

Whether someone is staff is the ledger's answer, asked again on every update: a link removed in
the ledger stops working at the next tap, whatever menu or half-finished conversation the person
still has. Someone who is not staff learns nothing from a code — not whose it is, not whether it
is valid — and the ledger is not even asked about it.

A redemption moves through two flows kept in the bot's database: ``BILL`` (code checked, waiting
for the amount) and ``CONFIRM`` (preview shown). The preview's buttons carry the key the flow holds,
and that key is the ledger's idempotency key, so a double tap, or a tap again after a timeout,
asks for the same redemption and gets the first receipt back; a second phone has its own flow and
key and is told the code was used.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import secrets
from typing import Any

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import callbacks, formatting, inbox, scan
from bot.amounts import AmountError, AmountProblem, parse_bill
from bot.context import App, GPContext
from bot.i18n import Translator
from bot.menus import refresh_person_menu
from bot.storage.chats import utcnow
from bot.storage.flows import Pending
from ledger_client import errors as ledger_errors
from ledger_client.models import Preview, Receipt, StaffLink, Today

log = logging.getLogger(__name__)

BILL = "bill"  # flow: the code is good, waiting for the bill amount
CONFIRM = "redeem"  # flow: the preview is shown, waiting for Confirm or Cancel
BUTTON = "rd"  # rd|ok|<key>, rd|no|<key>
PROBE_FEN = 1  # the bill a code is checked with before the cashier types the real one
FLOW_GRACE = dt.timedelta(minutes=10)  # past the code's life: a late amount hears "expired"
FLOW_MAX = dt.timedelta(minutes=30)


# --- texts ------------------------------------------------------------------------------------


def not_staff_text(t: Translator) -> str:
    """The one answer anyone who is not staff gets for any code, valid or not."""
    return t._(
        "This is a customer's redemption code. Only the staff of an alliance merchant can "
        "redeem it, at the till. /qr shows your own code."
    )


def problem_text(t: Translator, error: ledger_errors.LedgerClientError) -> str:
    if isinstance(error, ledger_errors.CodeExpired):
        return t._(
            "This code has expired. Ask the customer to tap “New code” (or send /qr) and scan "
            "the new one."
        )
    if isinstance(error, ledger_errors.CodeUsed):
        return t._(
            "This code was already redeemed. A code works for one purchase only; the customer "
            "can get a new one with /qr."
        )
    if isinstance(error, ledger_errors.CodeRevoked):
        return t._(
            "This code was replaced by a newer one. Ask the customer to show the newest code."
        )
    if isinstance(error, ledger_errors.CodeNotFound):
        return t._(
            "That is not a valid redemption code. Check the 20 digits, or scan the QR code "
            "instead."
        )
    if isinstance(error, ledger_errors.Throttled):
        minutes = max(1, math.ceil(error.retry_after / 60))
        return t._(
            "Too many invalid codes were tried from this account. Please wait {minutes} min "
            "before trying again."
        ).format(minutes=minutes)
    if isinstance(error, ledger_errors.NotStaff):
        return t._(
            "You are no longer staff of this merchant, so I cannot redeem codes for it. "
            "Ask your manager for a new staff invite."
        )
    if isinstance(error, ledger_errors.InsiderRefused):
        return t._(
            "Staff cannot redeem their own code or earn points at the merchant they work for. "
            "Nothing was redeemed."
        )
    if isinstance(error, ledger_errors.InvalidRequest) and "max_amount_fen" in error.details:
        return amount_text(t, AmountProblem.TOO_LARGE)
    raise error


def amount_text(t: Translator, problem: AmountProblem) -> str:
    if problem is AmountProblem.NOT_POSITIVE:
        reason = t._("The bill must be more than zero.")
    elif problem is AmountProblem.TOO_PRECISE:
        reason = t._("An amount has at most two decimals (fen).")
    elif problem is AmountProblem.TOO_LARGE:
        reason = t._("That is more than a single bill can be.")
    elif problem is AmountProblem.AMBIGUOUS:
        reason = t._("Please write decimals with a dot, like 88.50.")
    else:
        reason = t._("That is not an amount.")
    return "\n".join(
        [reason, t._("Type the bill in yuan, for example 88 or 88.50, or tap Cancel.")]
    )


def _bill_lines(t: Translator, customer: str, bill_fen: int, vouchers_fen: int) -> list[str]:
    return [
        t._("Customer: {customer}").format(customer=customer),
        t._("Bill: {amount}").format(amount=formatting.money(t, bill_fen)),
        t._("Vouchers applied: {amount}").format(amount=formatting.money(t, vouchers_fen)),
    ]


def preview_text(t: Translator, preview: Preview) -> str:
    return "\n".join(
        [
            t._("Please check with the customer:"),
            *_bill_lines(t, preview.member_masked, preview.bill_fen, preview.vouchers_applied_fen),
            t._("Customer pays: {amount}").format(amount=formatting.money(t, preview.pay_fen)),
            t._("Points the customer earns: {points}").format(
                points=formatting.number(t, preview.points_to_earn)
            ),
            t._("The code is valid until {time}.").format(
                time=formatting.clock(t, preview.code_expires_at)
            ),
        ]
    )


def receipt_text(t: Translator, receipt: Receipt) -> str:
    return "\n".join(
        [
            t._("✅ Redeemed at {merchant}").format(merchant=receipt.merchant_name),
            *_bill_lines(t, receipt.member_masked, receipt.bill_fen, receipt.vouchers_applied_fen),
            t._("Customer paid: {amount}").format(amount=formatting.money(t, receipt.pay_fen)),
            t._("Points earned: {points}").format(
                points=formatting.number(t, receipt.points_earned)
            ),
            t._("{time} · receipt no. {number}").format(
                time=formatting.when(t, receipt.at), number=receipt.redemption_id
            ),
        ]
    )


def today_text(t: Translator, link: StaffLink, today: Today) -> str:
    return "\n".join(
        [
            t._("Today at {merchant} ({day}):").format(
                merchant=link.merchant_name, day=formatting.day(t, today.date)
            ),
            t._("Redemptions: {count}").format(count=formatting.number(t, today.count)),
            t._("Bills: {amount}").format(amount=formatting.money(t, today.bill_fen)),
            t._("Vouchers applied: {amount}").format(
                amount=formatting.money(t, today.vouchers_fen)
            ),
            t._("Customers paid: {amount}").format(amount=formatting.money(t, today.paid_fen)),
        ]
    )


def cancel_keyboard(t: Translator, key: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(t._("✖ Cancel"), callback_data=callbacks.pack(BUTTON, "no", key))]]
    )


def confirm_keyboard(t: Translator, key: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t._("✅ Confirm"), callback_data=callbacks.pack(BUTTON, "ok", key)
                ),
                InlineKeyboardButton(
                    t._("✖ Cancel"), callback_data=callbacks.pack(BUTTON, "no", key)
                ),
            ]
        ]
    )


# --- who is acting ----------------------------------------------------------------------------


async def staff_link(context: GPContext) -> StaffLink | None:
    """The merchant this person works for right now, by the ledger's word."""
    return await context.services.ledger.staff_lookup(*context.need_profile().identity)


def _new_key() -> str:
    return secrets.token_urlsafe(12)  # 96 bits; fits a button and an idempotency key


def _flow_ttl(code_expires_at: dt.datetime) -> dt.timedelta:
    left = code_expires_at.replace(tzinfo=None) - utcnow()
    return min(max(left, dt.timedelta(0)) + FLOW_GRACE, FLOW_MAX)


async def _end_flows(context: GPContext) -> None:
    chat_id = context.need_profile().chat_id
    for kind in (BILL, CONFIRM):
        await context.services.flows.finish(chat_id, kind)


# --- linking ----------------------------------------------------------------------------------


async def join_as_staff(message: Message, context: GPContext, invite: str) -> None:
    t = context.t
    channel, external_id = context.need_profile().identity
    ledger = context.services.ledger
    try:
        link = await ledger.redeem_staff_invite(invite, channel, external_id)
    except ledger_errors.InviteUsed:
        current = await staff_link(context)
        text = t._("This staff invite was already used; each invite links one person.")
        if current is not None:
            text += "\n" + t._("You are staff of {merchant}.").format(
                merchant=current.merchant_name
            )
        else:
            text += "\n" + t._("Ask your manager for a new one.")
        await message.reply_text(text)
        return
    except ledger_errors.InviteExpired:
        await message.reply_text(
            t._("This staff invite has expired. Ask your manager for a new one.")
        )
        return
    except ledger_errors.InviteNotFound:
        await message.reply_text(
            t._(
                "This staff invite is not valid. Check that the whole link was copied, or ask "
                "your manager for a new one."
            )
        )
        return
    await message.reply_text(
        "\n".join(
            [
                t._("You are now staff of {merchant}.").format(merchant=link.merchant_name),
                t._(
                    "To redeem a customer's code, scan their QR code with your phone's camera, "
                    "send me a photo of it, or type its 20 digits. /today shows today's "
                    "redemptions."
                ),
                t._("You can still use all the other commands for your own points."),
            ]
        )
    )
    await refresh_person_menu(context, staff=True)


# --- scanning, bill, preview ------------------------------------------------------------------


async def take_code(message: Message, context: GPContext, code: str) -> None:
    """A code from any source: check who is asking, then the code, then ask for the bill."""
    t = context.t
    link = await staff_link(context)
    if link is None:
        await _end_flows(context)
        await message.reply_text(not_staff_text(t))
        return
    identity = context.need_profile().identity
    try:
        # Checked before the bill is typed, so an expired code is known before anyone types.
        probe = await context.services.ledger.preview_redemption(
            code, link.merchant_id, PROBE_FEN, staff=identity
        )
    except ledger_errors.LedgerClientError as error:
        if isinstance(error, ledger_errors.Unavailable):
            raise
        await _end_flows(context)
        await message.reply_text(problem_text(t, error))
        return
    key = _new_key()
    data = {"code": code, "merchant_id": link.merchant_id, "key": key}
    chat_id = context.need_profile().chat_id
    await context.services.flows.start(chat_id, BILL, data, _flow_ttl(probe.code_expires_at))
    await message.reply_text(
        "\n".join(
            [
                t._("Code of customer {customer} at {merchant}, valid until {time}.").format(
                    customer=probe.member_masked,
                    merchant=link.merchant_name,
                    time=formatting.clock(t, probe.code_expires_at),
                ),
                t._("How much is the bill? Type it in yuan, for example 88.50."),
            ]
        ),
        reply_markup=cancel_keyboard(t, key),
    )


async def take_photo(message: Message, context: GPContext) -> None:
    t = context.t
    assert message.photo
    image: bytes | None = None
    try:
        file = await context.bot.get_file(message.photo[-1].file_id)
        # getFile may answer without a path (a file the Bot API cannot hand over), and then
        # python-telegram-bot raises RuntimeError, not a TelegramError: the cashier should
        # hear "send it again", as for a failed download, not "something went wrong".
        if file.file_path:
            image = bytes(await file.download_as_bytearray())
        else:
            log.warning("getFile gave no path for a photo")
    except TelegramError:
        log.warning("could not download a photo", exc_info=True)
    if image is None:
        await message.reply_text(t._("I could not download that photo. Please send it again."))
        return
    texts = await scan.read_qr(image)
    codes = [code for code in map(scan.redemption_code, texts) if code is not None]
    if codes:
        await take_code(message, context, codes[0])
    elif texts:
        await message.reply_text(
            t._(
                "That QR code is not a Green Points redemption code. Ask the customer to open "
                "/qr in this bot and show that code."
            )
        )
    else:
        await message.reply_text(
            t._(
                "I could not find a QR code in that photo. Hold the phone closer so the code "
                "fills most of the picture, keep it sharp and free of glare, or type the 20 "
                "digits shown under the code."
            )
        )


async def show_preview(
    message: Message, context: GPContext, data: dict[str, Any], bill_fen: int
) -> None:
    t = context.t
    identity = context.need_profile().identity
    try:
        preview = await context.services.ledger.preview_redemption(
            str(data["code"]), int(data["merchant_id"]), bill_fen, staff=identity
        )
    except ledger_errors.InvalidRequest as error:
        await message.reply_text(problem_text(t, error))  # over the ledger's limit: ask again
        return
    except ledger_errors.LedgerClientError as error:
        if isinstance(error, ledger_errors.Unavailable):
            raise
        await _end_flows(context)
        await message.reply_text(problem_text(t, error))
        return
    key = await _await_confirm(context, data, preview)
    await message.reply_text(preview_text(t, preview), reply_markup=confirm_keyboard(t, key))


async def _await_confirm(context: GPContext, data: dict[str, Any], preview: Preview) -> str:
    """Open the CONFIRM flow for this preview; the flow keeps the figures the cashier reads out,
    and the redemption carries them so the ledger books exactly those or refuses (issue 11)."""
    key = _new_key()
    pending = {
        "code": data["code"],
        "merchant_id": data["merchant_id"],
        "bill_fen": preview.bill_fen,
        "vouchers_applied_fen": preview.vouchers_applied_fen,
        "pay_fen": preview.pay_fen,
        "key": key,
    }
    chat_id = context.need_profile().chat_id
    await context.services.flows.start(
        chat_id, CONFIRM, pending, _flow_ttl(preview.code_expires_at)
    )
    return key


async def on_flow_message(update: Update, context: GPContext, pending: Pending) -> None:
    """The next message while a redemption is open: an amount, or a new code replacing it."""
    message = update.effective_message
    assert message is not None
    t = context.t
    if await staff_link(context) is None:
        await _end_flows(context)
        await message.reply_text(not_staff_text(t))
        return
    if message.photo:
        await take_photo(message, context)
        return
    text = message.text or ""
    code = scan.redemption_code(text)
    if code is not None:
        await take_code(message, context, code)
        return
    try:
        bill_fen = parse_bill(text)
    except AmountError as error:
        hint = amount_text(t, error.problem)
        if pending.kind == CONFIRM:
            hint = t._("Tap Confirm or Cancel above, or type a different amount.")
        await message.reply_text(hint)
        return
    await show_preview(message, context, pending.data, bill_fen)


# --- confirm / cancel -------------------------------------------------------------------------


async def on_button(update: Update, context: GPContext) -> None:
    """Confirm or Cancel. The tap is answered after the message changes, so the button's spinner
    stops when the cashier can read the outcome, never before."""
    query = update.callback_query
    assert query is not None
    t = context.t
    parts = callbacks.unpack(query.data, BUTTON, 2)
    if parts is None or parts[0] not in {"ok", "no"}:
        await query.answer(t._("This button has expired."))
        return
    action, key = parts
    if await staff_link(context) is None:
        await _end_flows(context)
        await query.answer(not_staff_text(t), show_alert=True)
        return
    chat_id = context.need_profile().chat_id
    flows = context.services.flows
    pending = await flows.get(chat_id)
    if pending is None or pending.kind not in {BILL, CONFIRM} or pending.data.get("key") != key:
        await query.answer(t._("This button has expired."))
        return
    if action == "no":
        # Only the tap that closes the flow may say so: a Confirm racing it may have redeemed.
        if await flows.finish(chat_id, pending.kind):
            await callbacks.edit_text(query, t._("Cancelled. Nothing was redeemed."))
            await query.answer()
        else:
            await query.answer(t._("This button has expired."))
        return
    if pending.kind != CONFIRM:
        await query.answer(t._("This button has expired."))
        return
    data = pending.data
    identity = context.need_profile().identity
    bill_fen = int(data["bill_fen"])
    try:
        if "vouchers_applied_fen" not in data:  # a flow opened before previews were carried
            raise ledger_errors.AmountsChanged("no previewed figures in this flow")
        receipt = await context.services.ledger.redeem(
            str(data["code"]),
            int(data["merchant_id"]),
            bill_fen,
            key,
            staff=identity,
            vouchers_applied_fen=int(data["vouchers_applied_fen"]),
            pay_fen=int(data["pay_fen"]),
        )
    except ledger_errors.AmountsChanged:
        await _show_fresh_preview(query, context, data, bill_fen)
        return
    except ledger_errors.LedgerClientError as error:
        if isinstance(error, ledger_errors.Unavailable):
            raise  # the flow stays: tapping again retries with the same key
        await flows.finish(chat_id, CONFIRM)
        await callbacks.edit_text(query, problem_text(t, error))
        await query.answer()
        return
    # A twin tap got the same receipt and shows the same text (Telegram calls the second edit
    # "not modified"); a newer scan that replaced this flow in the meantime is left alone.
    current = await flows.get(chat_id)
    if current is not None and current.data.get("key") == key:
        await flows.finish(chat_id, CONFIRM)
    await callbacks.edit_text(query, receipt_text(t, receipt))
    await query.answer(t._("Redeemed."))


async def _show_fresh_preview(
    query: CallbackQuery, context: GPContext, data: dict[str, Any], bill_fen: int
) -> None:
    """The ledger's figures moved since the preview (a release, an expiry, a new cap): nothing
    was redeemed; the same message now shows the new figures to read out and confirm."""
    t = context.t
    chat_id = context.need_profile().chat_id
    try:
        preview = await context.services.ledger.preview_redemption(
            str(data["code"]),
            int(data["merchant_id"]),
            bill_fen,
            staff=context.need_profile().identity,
        )
    except ledger_errors.LedgerClientError as error:
        if isinstance(error, ledger_errors.Unavailable):
            raise
        await context.services.flows.finish(chat_id, CONFIRM)
        await callbacks.edit_text(query, problem_text(t, error))
        await query.answer()
        return
    key = await _await_confirm(context, data, preview)
    text = "\n".join(
        [
            t._(
                "⚠ The amounts changed since the preview (vouchers were granted or expired, "
                "or the merchant's terms changed). Nothing was redeemed."
            ),
            preview_text(t, preview),
        ]
    )
    await callbacks.edit_text(query, text, reply_markup=confirm_keyboard(t, key))
    await query.answer(t._("The amounts changed: check the new figures."), show_alert=True)


# --- catchers: free text and photos with no conversation open ---------------------------------


async def catch_code_text(update: Update, context: GPContext) -> bool:
    message = update.effective_message
    if message is None or not message.text:
        return False
    code = scan.redemption_code(message.text)
    if code is None:
        return False
    await take_code(message, context, code)
    return True


async def catch_photo(update: Update, context: GPContext) -> bool:
    """Staff photos are scanned; anyone else's go on to the fallback's friendly answer."""
    message = update.effective_message
    if message is None or not message.photo:
        return False
    if await staff_link(context) is None:
        return False
    await take_photo(message, context)
    return True


# --- entry points -----------------------------------------------------------------------------


async def open_deep_link(update: Update, context: GPContext, payload: str) -> bool:
    """Handle a ``/start <payload>`` that is a redemption code or staff invite; False if not."""
    message = update.effective_message
    assert message is not None
    if scan.is_invite(payload):
        await join_as_staff(message, context, payload.strip())
        return True
    code = scan.redemption_code(payload)
    if code is None:
        return False
    await take_code(message, context, code)
    return True


async def today(update: Update, context: GPContext) -> None:
    message = update.effective_message
    assert message is not None
    t = context.t
    link = await staff_link(context)
    if link is None:
        await message.reply_text(
            t._(
                "/today is for the staff of alliance merchants. If you work at one, ask your "
                "manager for a staff invite."
            )
        )
        await refresh_person_menu(context, staff=False)  # a menu left from an ended link goes away
        return
    summary = await context.services.ledger.today(
        link.merchant_id, staff=context.need_profile().identity
    )
    await message.reply_text(today_text(t, link, summary))


def register(app: App) -> None:
    app.add_handler(CommandHandler("today", today))
    app.add_handler(CallbackQueryHandler(on_button, pattern=callbacks.pattern(BUTTON)))
    inbox.on_flow(BILL, on_flow_message)
    inbox.on_flow(CONFIRM, on_flow_message)
    inbox.catch(catch_code_text)
    inbox.catch(catch_photo)
