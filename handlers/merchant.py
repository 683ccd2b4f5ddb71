"""Merchant staff: invites, scanning customers' codes, bill, preview, confirm; /today.

Whether someone is staff is the ledger's answer, asked again on every update: a link removed in
the ledger stops working at the next tap, whatever menu or half-finished conversation the person
still has. Someone who is not staff learns nothing from a code — not whose it is, not whether it
is valid — and the ledger is not even asked about it.

A redemption is a small state machine whose states this feature registers with the router (see
``routes``) and keeps in the bot's database: ``BILL`` (code checked, waiting for the amount) and
``CONFIRM`` (preview shown); free text and photos go to the state the cashier is in. The
preview's buttons carry the key the flow holds, and that key is the ledger's idempotency key, so
a double tap, or a tap again after a timeout, asks for the same redemption and gets the first
receipt back; a second phone has its own flow and key and is told the code was used."""

from __future__ import annotations

import datetime as dt
import logging
import math
import secrets
from typing import Any

from bot.chat import choice_data, formatting
from bot.chat.amounts import AmountError, AmountProblem, parse_bill
from bot.chat.channel import ChannelError
from bot.chat.cleaning import clean_text
from bot.chat.clock import utcnow
from bot.chat.codes import is_invite, redemption_code
from bot.chat.events import Choice, Command, Photo, Text
from bot.chat.failures import staff_revoked_text
from bot.chat.flows import Pending
from bot.chat.i18n import Translator
from bot.chat.replies import ChoiceButton, Toast
from bot.chat.router import Router
from bot.chat.turn import Turn
from handlers import owner
from handlers.nearby import store_title
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
    if isinstance(error, ledger_errors.PurchaseCapReached):
        return t._(
            "This customer reached today's limit of purchases at this merchant, so nothing was "
            "redeemed. They can come back tomorrow."
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


def shown(text: str) -> str:
    """A masked name or a shop's name as the other side sees it: one clean line (issue 9: a
    name starting with U+202E turned the cashier's line around)."""
    return clean_text(text, single_line=True) or "**"


def _bill_lines(t: Translator, customer: str, bill_fen: int, vouchers_fen: int) -> list[str]:
    return [
        t._("Customer: {customer}").format(customer=shown(customer)),
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
                merchant=store_title(t, link.merchant_name, link.store_name if today.store_id
                                     else None),
                day=formatting.day(t, today.date),
            ),
            t._("Redemptions: {count}").format(count=formatting.number(t, today.count)),
            t._("Bills: {amount}").format(amount=formatting.money(t, today.bill_fen)),
            t._("Vouchers applied: {amount}").format(
                amount=formatting.money(t, today.vouchers_fen)
            ),
            t._("Customers paid: {amount}").format(amount=formatting.money(t, today.paid_fen)),
        ]
    )


def cancel_choices(t: Translator, key: str) -> list[list[ChoiceButton]]:
    return [[ChoiceButton(t._("✖ Cancel"), choice_data.pack(BUTTON, "no", key))]]


def confirm_choices(t: Translator, key: str) -> list[list[ChoiceButton]]:
    return [
        [
            ChoiceButton(t._("✅ Confirm"), choice_data.pack(BUTTON, "ok", key)),
            ChoiceButton(t._("✖ Cancel"), choice_data.pack(BUTTON, "no", key)),
        ]
    ]


# --- who is acting ----------------------------------------------------------------------------


async def staff_link(turn: Turn) -> StaffLink | None:
    """The merchant this person works for right now, by the ledger's word."""
    return await turn.services.ledger.staff_lookup(*turn.profile.identity)


async def refusal_text(turn: Turn) -> str:
    """Why someone who is not (or no longer) staff is refused: a revoked person is told their
    access was revoked (issue 11), anyone else gets the one answer that reveals nothing."""
    link = await turn.services.ledger.staff_lookup(*turn.profile.identity, include_revoked=True)
    if link is not None and link.revoked_at is not None:
        return staff_revoked_text(turn.t, link.merchant_name)
    return not_staff_text(turn.t)


def _new_key() -> str:
    return secrets.token_urlsafe(12)  # 96 bits; fits a button and an idempotency key


def _flow_ttl(code_expires_at: dt.datetime) -> dt.timedelta:
    left = code_expires_at.replace(tzinfo=None) - utcnow()
    return min(max(left, dt.timedelta(0)) + FLOW_GRACE, FLOW_MAX)


async def _end_flows(turn: Turn) -> None:
    chat = turn.profile.key
    for kind in (BILL, CONFIRM):
        await turn.services.flows.finish(chat, kind)


# --- linking ----------------------------------------------------------------------------------


async def join_as_staff(turn: Turn, invite: str) -> None:
    t = turn.t
    channel, external_id = turn.profile.identity
    ledger = turn.services.ledger
    try:
        link = await ledger.redeem_staff_invite(invite, channel, external_id)
    except ledger_errors.InviteUsed:
        current = await staff_link(turn)
        text = t._("This staff invite was already used; each invite links one person.")
        if current is not None:
            text += "\n" + t._("You are staff of {merchant}.").format(
                merchant=current.merchant_name
            )
        else:
            text += "\n" + t._("Ask your manager for a new one.")
        turn.text(text)
        return
    except ledger_errors.InviteExpired:
        turn.text(
            t._("This staff invite has expired. Ask your manager for a new one.")
        )
        return
    except ledger_errors.InviteNotFound:
        turn.text(
            t._(
                "This staff invite is not valid. Check that the whole link was copied, or ask "
                "your manager for a new one."
            )
        )
        return
    turn.text(
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
    turn.refresh_menu(staff=True)


# --- scanning, bill, preview ------------------------------------------------------------------


async def take_code(turn: Turn, code: str) -> None:
    """A code from any source: check who is asking, then the code, then ask for the bill."""
    t = turn.t
    link = await staff_link(turn)
    if link is None:
        await _end_flows(turn)
        turn.text(await refusal_text(turn))
        turn.refresh_menu(staff=False)  # a cashier's menu left from an ended link goes away
        return
    identity = turn.profile.identity
    try:
        # Checked before the bill is typed, so an expired code is known before anyone types.
        probe = await turn.services.ledger.preview_redemption(
            code, link.merchant_id, PROBE_FEN, staff=identity
        )
    except ledger_errors.LedgerClientError as error:
        if isinstance(error, ledger_errors.Unavailable):
            raise
        await _end_flows(turn)
        turn.text(problem_text(t, error))
        return
    key = _new_key()
    data = {"code": code, "merchant_id": link.merchant_id, "key": key}
    chat = turn.profile.key
    await turn.services.flows.start(chat, BILL, data, _flow_ttl(probe.code_expires_at))
    turn.text(
        "\n".join(
            [
                t._("Code of customer {customer} at {merchant}, valid until {time}.").format(
                    customer=shown(probe.member_masked),
                    merchant=shown(link.merchant_name),
                    time=formatting.clock(t, probe.code_expires_at),
                ),
                t._("How much is the bill? Type it in yuan, for example 88.50."),
            ]
        ),
        cancel_choices(t, key),
    )


async def take_photo(turn: Turn, photo: Photo) -> None:
    t = turn.t
    image: bytes | None = None
    try:
        image = await photo.fetch()
    except ChannelError:
        # The cashier should hear "send it again", as for any failed download, not "something
        # went wrong".
        log.warning("could not download a photo", exc_info=True)
    if image is None:
        turn.text(t._("I could not download that photo. Please send it again."))
        return
    texts = await turn.services.pictures.read_qr(image)
    codes = [code for code in map(redemption_code, texts) if code is not None]
    if codes:
        await take_code(turn, codes[0])
    elif texts:
        turn.text(
            t._(
                "That QR code is not a Green Points redemption code. Ask the customer to open "
                "/qr in this bot and show that code."
            )
        )
    else:
        turn.text(
            t._(
                "I could not find a QR code in that photo. Hold the phone closer so the code "
                "fills most of the picture, keep it sharp and free of glare, or type the 20 "
                "digits shown under the code."
            )
        )


async def show_preview(
    turn: Turn, data: dict[str, Any], bill_fen: int
) -> None:
    t = turn.t
    identity = turn.profile.identity
    try:
        preview = await turn.services.ledger.preview_redemption(
            str(data["code"]), int(data["merchant_id"]), bill_fen, staff=identity
        )
    except ledger_errors.InvalidRequest as error:
        turn.text(problem_text(t, error))  # over the ledger's limit: ask again
        return
    except ledger_errors.LedgerClientError as error:
        if isinstance(error, ledger_errors.Unavailable):
            raise
        await _end_flows(turn)
        turn.text(problem_text(t, error))
        return
    key = await _await_confirm(turn, data, preview)
    turn.text(preview_text(t, preview), confirm_choices(t, key))


async def _await_confirm(turn: Turn, data: dict[str, Any], preview: Preview) -> str:
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
    await turn.services.flows.start(
        turn.profile.key, CONFIRM, pending, _flow_ttl(preview.code_expires_at)
    )
    return key


async def on_flow_message(event: Text | Photo, turn: Turn, pending: Pending) -> None:
    """The next message while a redemption is open: an amount, or a new code replacing it."""
    t = turn.t
    if await staff_link(turn) is None:
        await _end_flows(turn)
        turn.text(await refusal_text(turn))
        return
    if isinstance(event, Photo):
        await take_photo(turn, event)
        return
    text = event.text
    code = redemption_code(text)
    if code is not None:
        await take_code(turn, code)
        return
    try:
        bill_fen = parse_bill(text)
    except AmountError as error:
        hint = amount_text(t, error.problem)
        if pending.kind == CONFIRM:
            hint = t._("Tap Confirm or Cancel above, or type a different amount.")
        turn.text(hint)
        return
    await show_preview(turn, pending.data, bill_fen)


# --- confirm / cancel -------------------------------------------------------------------------


async def on_button(event: Choice, turn: Turn) -> None:
    """Confirm or Cancel. The tap is answered after the message changes (the channel answers a
    tap after rendering), so the spinner stops when the cashier can read the outcome."""
    t = turn.t
    expired = Toast(t._("This button has expired."))
    parts = choice_data.unpack(event.data, BUTTON, 2)
    if parts is None or parts[0] not in {"ok", "no"}:
        turn.say(expired)
        return
    action, key = parts
    if await staff_link(turn) is None:
        await _end_flows(turn)
        turn.say(Toast(await refusal_text(turn), alert=True))
        return
    chat = turn.profile.key
    flows = turn.services.flows
    pending = await flows.get(chat)
    if pending is None or pending.kind not in {BILL, CONFIRM} or pending.data.get("key") != key:
        turn.say(expired)
        return
    if action == "no":
        # Only the tap that closes the flow may say so: a Confirm racing it may have redeemed.
        if await flows.finish(chat, pending.kind):
            turn.text(t._("Cancelled. Nothing was redeemed."), replaces=True)
            turn.say(Toast(""))
        else:
            turn.say(expired)
        return
    if pending.kind != CONFIRM:
        turn.say(expired)
        return
    data = pending.data
    bill_fen = int(data["bill_fen"])
    try:
        if "vouchers_applied_fen" not in data:  # a flow opened before previews were carried
            raise ledger_errors.AmountsChanged("no previewed figures in this flow")
        receipt = await turn.services.ledger.redeem(
            str(data["code"]),
            int(data["merchant_id"]),
            bill_fen,
            key,
            staff=turn.profile.identity,
            vouchers_applied_fen=int(data["vouchers_applied_fen"]),
            pay_fen=int(data["pay_fen"]),
        )
    except ledger_errors.AmountsChanged:
        await _show_fresh_preview(turn, data, bill_fen)
        return
    except ledger_errors.LedgerClientError as error:
        if isinstance(error, ledger_errors.Unavailable):
            raise  # the flow stays: tapping again retries with the same key
        await flows.finish(chat, CONFIRM)
        turn.text(problem_text(t, error), replaces=True)
        turn.say(Toast(""))
        return
    # A twin tap got the same receipt and shows the same text (Telegram calls the second edit
    # "not modified"); a newer scan that replaced this flow in the meantime is left alone.
    current = await flows.get(chat)
    if current is not None and current.data.get("key") == key:
        await flows.finish(chat, CONFIRM)
    turn.text(
        receipt_text(t, receipt), [[owner.undo_choice(t, receipt.redemption_id)]], replaces=True
    )
    turn.say(Toast(t._("Redeemed.")))


async def _show_fresh_preview(turn: Turn, data: dict[str, Any], bill_fen: int) -> None:
    """The ledger's figures moved since the preview (a release, an expiry, a new cap): nothing
    was redeemed; the same message now shows the new figures to read out and confirm."""
    t = turn.t
    try:
        preview = await turn.services.ledger.preview_redemption(
            str(data["code"]), int(data["merchant_id"]), bill_fen, staff=turn.profile.identity
        )
    except ledger_errors.LedgerClientError as error:
        if isinstance(error, ledger_errors.Unavailable):
            raise
        await turn.services.flows.finish(turn.profile.key, CONFIRM)
        turn.text(problem_text(t, error), replaces=True)
        turn.say(Toast(""))
        return
    key = await _await_confirm(turn, data, preview)
    text = "\n".join(
        [
            t._(
                "⚠ The amounts changed since the preview (vouchers were granted or expired, "
                "or the merchant's terms changed). Nothing was redeemed."
            ),
            preview_text(t, preview),
        ]
    )
    turn.text(text, confirm_choices(t, key), replaces=True)
    turn.say(Toast(t._("The amounts changed: check the new figures."), alert=True))


# --- catchers: free text and photos with no conversation open ---------------------------------


async def catch_code(event: Text | Photo, turn: Turn) -> bool:
    """Typed digits or a link anyone sends; staff photos are scanned, anyone else's go on to the
    fallback's friendly answer."""
    if isinstance(event, Photo):
        if await staff_link(turn) is None:
            return False
        await take_photo(turn, event)
        return True
    code = redemption_code(event.text)
    if code is None:
        return False
    await take_code(turn, code)
    return True


# --- entry points -----------------------------------------------------------------------------


async def open_deep_link(turn: Turn, payload: str) -> bool:
    """Handle a scanned payload (``/start <payload>``, a QR scene) that is a redemption code or
    a staff invite; False if it is neither."""
    if is_invite(payload):
        await join_as_staff(turn, payload.strip())
        return True
    code = redemption_code(payload)
    if code is None:
        return False
    await take_code(turn, code)
    return True


async def today(event: Command, turn: Turn) -> None:
    t = turn.t
    link = await staff_link(turn)
    if link is None:
        turn.text(
            t._(
                "/today is for the staff of alliance merchants. If you work at one, ask your "
                "manager for a staff invite."
            )
        )
        turn.refresh_menu(staff=False)  # a menu left from an ended link goes away
        return
    summary = await turn.services.ledger.today(link.merchant_id, staff=turn.profile.identity)
    turn.text(today_text(t, link, summary))


def routes(router: Router) -> None:
    router.command("today", today)
    router.choice(BUTTON, on_button)
    router.state(BILL, on_flow_message)
    router.state(CONFIRM, on_flow_message)
    router.catch(catch_code)
