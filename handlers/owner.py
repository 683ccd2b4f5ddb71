"""A merchant's owners in the chat (issue 11; DESIGN.md "Merchants and their money"): the
statement (/statement, with the month's CSV as a file), inviting a cashier (/invite: a link and
its QR code), the staff list with a revoke button per cashier (/staff), and undoing a
redemption (/undo <receipt no.>, or the button under a receipt) — owners within the ledger's
window, the cashier who redeemed it within their minutes.

Who may do what is the ledger's answer (``staff_access``), asked on every event: a revoked
person's next tap is refused and told why, a cashier asking for an owner's page is told it is
the owners'. The revoked person is told at once through the outbox, in their own language; the
customer whose redemption is undone is told by the ledger's ``voucher.redemption_undone`` event
(bot/outbox/notices.py)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.chat import choice_data, formatting
from bot.chat.cleaning import clean_text
from bot.chat.events import Choice, Command
from bot.chat.failures import STAFF_REVOKED, staff_revoked_text
from bot.chat.i18n import Translator
from bot.chat.replies import ChoiceButton, Document, Notice, Picture, Toast
from bot.chat.router import Router
from bot.chat.turn import Turn
from ledger_client import errors as ledger_errors
from ledger_client.models import StaffLink, Statement, StatementLine, Undo

STAFF_BUTTON = "sf"  # sf|rv|<channel>|<id> asks, sf|ok|<channel>|<id> revokes, sf|no keeps
UNDO_BUTTON = "ud"  # ud|ask|<receipt>, ud|ok|<receipt>, ud|no|<receipt>
PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?$")
CSV_BOM = "\ufeff"  # Chinese Excel reads a CSV as UTF-8 only with it (ledger/csv_text.py)


# --- who is asking ----------------------------------------------------------------------------


T = TypeVar("T")


def _shop(name: str) -> str:
    """A shop's name as shown in a line of text (cleaned: issue 9)."""
    return clean_text(name, single_line=True) or "**"


def owners_only_text(t: Translator) -> str:
    return t._(
        "This is for the owners of alliance merchants. If you own one, ask the alliance for an "
        "owner's staff invite."
    )


async def acting(turn: Turn, *, owner: bool) -> StaffLink | None:
    """The person's live staff link, or None after telling them why not (not staff, revoked,
    or a cashier where ``owner`` is asked for)."""
    t = turn.t
    link = await turn.services.ledger.staff_lookup(*turn.profile.identity, include_revoked=True)
    if link is None:
        turn.text(owners_only_text(t))
        return None
    if link.revoked_at is not None:
        turn.text(staff_revoked_text(t, link.merchant_name))
        turn.refresh_menu(staff=False)
        return None
    if owner and link.role != "owner":
        turn.text(
            t._("Only an owner of {merchant} can do this.").format(
                merchant=_shop(link.merchant_name)
            )
        )
        return None
    return link


async def _for_owner(
    turn: Turn, ask: Callable[[StaffLink], Awaitable[T]]
) -> tuple[StaffLink, T] | None:
    """``ask`` the ledger for the owner this person is; None after telling them why not."""
    link = await acting(turn, owner=True)
    if link is None:
        return None
    try:
        return link, await ask(link)
    except ledger_errors.LedgerClientError as error:
        _refused(turn, error)
        return None


def _refused(turn: Turn, error: ledger_errors.LedgerClientError) -> None:
    """What the ledger refused, said plainly (an outage is raised for the core to report)."""
    t = turn.t
    if isinstance(error, ledger_errors.Unavailable):
        raise error
    if isinstance(error, ledger_errors.StaffRevoked):
        turn.text(t._("Your staff access was revoked, so I cannot do this. Nothing was done."))
    elif isinstance(error, ledger_errors.NotOwner):
        turn.text(t._("Only an owner of the shop can do this. Nothing was done."))
    elif isinstance(error, ledger_errors.NotStaff):
        turn.text(t._("You are not staff of this shop any more. Nothing was done."))
    else:
        raise error


# --- /statement -------------------------------------------------------------------------------


def _line(t: Translator, line: StatementLine) -> str:
    money = formatting.money
    if line.kind == "purchases":
        return t.ngettext(
            "{count} purchase, {bills}: concessions you owe {owed}",
            "{count} purchases, {bills}: concessions you owe {owed}",
            line.count,
        ).format(count=formatting.number(t, line.count), bills=money(t, line.amount_fen),
                 owed=money(t, line.debit_fen))
    if line.kind == "vouchers_accepted":
        return t.ngettext(
            "{count} redemption with vouchers: {owed} owed to you",
            "{count} redemptions with vouchers: {owed} owed to you",
            line.count,
        ).format(count=formatting.number(t, line.count), owed=money(t, line.credit_fen))
    if line.kind == "points_released":
        return t._("Your points released into settlement: {owed} owed to you").format(
            owed=money(t, line.credit_fen)
        )
    if line.kind == "redemption_undone":
        return t.ngettext(
            "{count} redemption undone: {vouchers} of vouchers and {concession} of concessions "
            "reversed",
            "{count} redemptions undone: {vouchers} of vouchers and {concession} of "
            "concessions reversed",
            line.count,
        ).format(count=formatting.number(t, line.count), vouchers=money(t, -line.credit_fen),
                 concession=money(t, -line.debit_fen))
    if line.kind == "purchase_refunded":
        return t.ngettext(
            "{count} purchase refunded: {amount}, {concession} of concessions taken back",
            "{count} purchases refunded: {amount}, {concession} of concessions taken back",
            line.count,
        ).format(count=formatting.number(t, line.count), amount=money(t, -line.amount_fen),
                 concession=money(t, -line.debit_fen))
    # A kind this bot does not know yet: its net, so the figures still add up.
    return t._("{kind}: {count}, net {net}").format(
        kind=line.kind, count=formatting.number(t, line.count),
        net=money(t, line.credit_fen - line.debit_fen),
    )


def _due(t: Translator, fen: int) -> str:
    if fen > 0:
        return t._("The alliance owes you {amount}.").format(amount=formatting.money(t, fen))
    if fen < 0:
        return t._("You owe the alliance {amount}.").format(amount=formatting.money(t, -fen))
    return t._("Nothing is due either way.")


def statement_text(t: Translator, s: Statement) -> str:
    """Today's lines (the last day of ``s``), the period's totals, what is carried and due."""
    merchant = _shop(s.merchant_name)
    out = [
        t._("Statement of {merchant}, {first} – {last}").format(
            merchant=merchant, first=formatting.day(t, s.from_date),
            last=formatting.day(t, s.to_date),
        )
    ]
    if s.from_date != s.to_date:
        today = [line for line in s.lines if line.date == s.to_date]
        out.append(t._("On {day}:").format(day=formatting.day(t, s.to_date)))
        out += [f"• {_line(t, line)}" for line in today] or [t._("• nothing booked")]
        out.append(t._("The whole period:"))
    out += [f"• {_line(t, line)}" for line in s.totals] or [t._("• nothing booked")]
    if s.opening_due_fen:
        out.append(t._("Carried forward from before: {amount}").format(
            amount=formatting.money(t, s.opening_due_fen)))
    for p in s.payouts:
        out.append(t._("Payout no. {number} for {period}: {amount}").format(
            number=p.payout_id, period=p.period, amount=formatting.money(t, p.amount_fen)))
    out.append(_due(t, s.closing_due_fen))
    if s.status == "paid" and s.paid_by is not None:
        out.append(t._("Paid: payout no. {number} on {day}.").format(
            number=s.paid_by.payout_id, day=formatting.day(t, s.paid_by.paid_at)))
    elif s.status == "open":
        out.append(t._("The period is still open; what is due is carried forward until paid."))
    elif s.status == "unpaid":
        out.append(t._("Not paid yet; it is carried forward until paid."))
    return "\n".join(out)


async def statement(event: Command, turn: Turn) -> None:
    t = turn.t
    period = event.args[0] if event.args else None
    if period is not None and not PERIOD.match(period):
        turn.text(t._(
            "Send /statement for this month so far, or /statement 2026-11 for a month, or "
            "/statement 2026-11-05 for a day."
        ))
        return
    link = await acting(turn, owner=True)
    if link is None:
        return
    ledger, me = turn.services.ledger, turn.profile.identity
    try:
        s = await ledger.statement(link.merchant_id, period, staff=me)
        csv_text = await ledger.statement_csv(
            link.merchant_id, first=s.from_date, last=s.to_date, staff=me
        )
    except ledger_errors.InvalidRequest:
        turn.text(t._("There is no such day. Try /statement 2026-11 or /statement 2026-11-05."))
        return
    except ledger_errors.LedgerClientError as error:
        _refused(turn, error)
        return
    turn.text(statement_text(t, s))
    name = f"statement-{link.merchant_id}-{s.from_date.isoformat()}-{s.to_date.isoformat()}.csv"
    turn.say(
        Document(
            (CSV_BOM + csv_text).encode("utf-8"),
            name,
            caption=t._("The statement as a spreadsheet (CSV, amounts in yuan)."),
            alt_text=csv_text,
        )
    )


# --- /invite ----------------------------------------------------------------------------------


async def invite(event: Command, turn: Turn) -> None:
    t = turn.t
    ledger, me = turn.services.ledger, turn.profile.identity
    found = await _for_owner(turn, lambda link: ledger.create_staff_invite(
        link.merchant_id, staff=me))
    if found is None:
        return
    link, made = found
    url = turn.services.deep_link(made.code)
    text = "\n".join(
        [
            t._("Cashier invite for {merchant}.").format(
                merchant=_shop(link.merchant_name)
            ),
            t._(
                "The new cashier scans this QR code with their phone, or opens the link, before "
                "{time}. It links one person."
            ).format(time=formatting.when(t, made.expires_at)),
            url,
        ]
    )
    turn.say(Picture(turn.services.pictures.qr(url), text, text))


# --- /staff and revoking ----------------------------------------------------------------------


def _fits(*parts: str) -> bool:
    try:
        data = choice_data.pack(STAFF_BUTTON, "rv", *parts)
    except ValueError:
        return False
    return choice_data.unpack(data, STAFF_BUTTON, 3) is not None


async def _who(turn: Turn, channel: str, external_id: str) -> str:
    profile = await turn.services.chats.get((channel, external_id))
    raw = profile.display_name if profile else None
    name = clean_text(raw, single_line=True) if raw else None
    return f"{name} ({channel})" if name else f"{channel}:{external_id}"


async def staff(event: Command, turn: Turn) -> None:
    t = turn.t
    ledger, me = turn.services.ledger, turn.profile.identity
    found = await _for_owner(turn, lambda link: ledger.list_staff(link.merchant_id, staff=me))
    if found is None:
        return
    link, listed = found
    lines = [t._("Staff of {merchant}:").format(
        merchant=_shop(link.merchant_name))]
    buttons: list[list[ChoiceButton]] = []
    for person in listed.staff:
        who = await _who(turn, person.channel, person.external_id)
        role = t._("owner") if person.role == "owner" else t._("cashier")
        lines.append(t._("• {who}, {role}, since {day}").format(
            who=who, role=role, day=formatting.day(t, person.since)))
        mine = (person.channel, person.external_id) == turn.profile.identity
        if person.role != "owner" and not mine and _fits(person.channel, person.external_id):
            data = choice_data.pack(STAFF_BUTTON, "rv", person.channel, person.external_id)
            buttons.append([ChoiceButton(t._("Revoke {who}").format(who=who)[:60], data)])
    lines.append(t._("/invite makes a cashier invite."))
    turn.text("\n".join(lines), buttons)


async def _tell_revoked(
    turn: Turn, channel: str, external_id: str, merchant: str, when: str
) -> None:
    """The revoked person hears it from the outbox, in their own language, once per revocation
    (a second tap on the same confirmation finds the ledger's first revocation: same ``when``)."""
    profile = await turn.services.chats.get((channel, external_id))
    if profile is None or profile.blocked:
        return
    await turn.services.notify(
        (channel, external_id),
        Notice(STAFF_REVOKED, {"merchant_name": merchant}),
        f"revoked:{channel}:{external_id}:{when}",
    )


async def on_staff_button(event: Choice, turn: Turn) -> None:
    t = turn.t
    parts = choice_data.unpack(event.data, STAFF_BUTTON, 3)
    if parts is None and choice_data.unpack(event.data, STAFF_BUTTON, 1) == ["no"]:
        turn.text(t._("Nothing was changed."), replaces=True)
        turn.say(Toast(""))
        return
    if parts is None or parts[0] not in {"rv", "ok"}:
        turn.say(Toast(t._("This button has expired.")))
        return
    action, channel, external_id = parts
    link = await acting(turn, owner=True)
    if link is None:
        turn.say(Toast(""))
        return
    who = await _who(turn, channel, external_id)
    if action == "rv":
        turn.text(
            t._("Revoke {who}? Their next scan or tap at {merchant} will be refused.").format(
                who=who, merchant=_shop(link.merchant_name)),
            [[ChoiceButton(t._("Yes, revoke"), choice_data.pack(STAFF_BUTTON, "ok", channel,
                                                                external_id)),
              ChoiceButton(t._("Keep"), choice_data.pack(STAFF_BUTTON, "no"))]],
            replaces=True,
        )
        turn.say(Toast(""))
        return
    try:
        gone = await turn.services.ledger.revoke_staff(
            link.merchant_id, channel, external_id, staff=turn.profile.identity
        )
    except ledger_errors.StaffNotFound:
        turn.text(t._("{who} is not staff of your shop.").format(who=who), replaces=True)
        turn.say(Toast(""))
        return
    except ledger_errors.LedgerClientError as error:
        _refused(turn, error)
        turn.say(Toast(""))
        return
    when = gone.revoked_at.isoformat() if gone.revoked_at else ""
    await _tell_revoked(turn, channel, external_id, link.merchant_name, when)
    turn.text(t._("Revoked: {who} can no longer redeem codes for your shop, and was told.")
              .format(who=who), replaces=True)
    turn.say(Toast(t._("Revoked.")))


# --- undo ------------------------------------------------------------------------------------


def undo_choice(t: Translator, receipt: int) -> ChoiceButton:
    """The button under a receipt: asks before undoing (owners, or its cashier for minutes)."""
    return ChoiceButton(t._("↩ Undo"), choice_data.pack(UNDO_BUTTON, "ask", receipt))


def _undone_text(t: Translator, done: Undo) -> str:
    if done.already:  # a second tap, or another owner: the first undo stands, told once
        return t._("Receipt no. {number} was already undone; nothing was changed now.").format(
            number=done.redemption_id)
    return "\n".join([
        t._("Receipt no. {number} is undone.").format(number=done.redemption_id),
        t._("Vouchers back with the customer: {amount}").format(
            amount=formatting.money(t, done.vouchers_returned_fen)),
        t._("Points taken back: {points}").format(
            points=formatting.number(t, done.points_taken_back)),
        t._("The customer is told. Redeem a new code if the sale goes ahead."),
    ])


def _undo_refused_text(t: Translator, error: ledger_errors.UndoRefused) -> str:
    reasons = {
        "window_closed": t._("The time to undo this redemption is over; a refund is the way."),
        "cashier_window_closed": t._(
            "A cashier can undo their own redemption only for a few minutes; ask an owner."),
        "not_redeemed_by_you": t._("A cashier can undo only their own redemptions; ask an owner."),
        "points_already_used": t._(
            "The points earned on this bill were already turned into vouchers, so it cannot be "
            "undone; a refund is the way."),
    }
    return reasons.get(error.reason, t._("This redemption cannot be undone.")) + "\n" + t._(
        "Nothing was changed.")


def _ask_undo(t: Translator, receipt: int) -> tuple[str, list[list[ChoiceButton]]]:
    return (
        t._("Undo receipt no. {number}? The customer gets their vouchers back and loses the "
            "points earned on it.").format(number=receipt),
        [[ChoiceButton(t._("Yes, undo"), choice_data.pack(UNDO_BUTTON, "ok", receipt)),
          ChoiceButton(t._("Keep"), choice_data.pack(UNDO_BUTTON, "no", receipt))]],
    )


async def undo_command(event: Command, turn: Turn) -> None:
    t = turn.t
    receipt = choice_data.as_int(event.args[0], 1, 2**62) if event.args else None
    if receipt is None:
        turn.text(t._("Send /undo and the receipt number, for example /undo 123."))
        return
    if await acting(turn, owner=False) is None:
        return
    text, buttons = _ask_undo(t, receipt)
    turn.text(text, buttons)


async def on_undo_button(event: Choice, turn: Turn) -> None:
    t = turn.t
    parts = choice_data.unpack(event.data, UNDO_BUTTON, 2)
    receipt = choice_data.as_int(parts[1], 1, 2**62) if parts else None
    if parts is None or receipt is None or parts[0] not in {"ask", "ok", "no"}:
        turn.say(Toast(t._("This button has expired.")))
        return
    if parts[0] == "no":
        turn.text(t._("Nothing was changed."), replaces=True)
        turn.say(Toast(""))
        return
    link = await acting(turn, owner=False)
    if link is None:
        turn.say(Toast(""))
        return
    if parts[0] == "ask":
        text, buttons = _ask_undo(t, receipt)
        turn.text(text, buttons)
        turn.say(Toast(""))
        return
    try:
        done = await turn.services.ledger.undo_redemption(
            receipt, link.merchant_id, staff=turn.profile.identity
        )
    except ledger_errors.UndoRefused as error:
        turn.text(_undo_refused_text(t, error), replaces=True)
        turn.say(Toast(""))
        return
    except ledger_errors.NotFound:
        turn.text(t._("There is no receipt no. {number} at your shop.").format(number=receipt),
                  replaces=True)
        turn.say(Toast(""))
        return
    except ledger_errors.LedgerClientError as error:
        _refused(turn, error)
        turn.say(Toast(""))
        return
    turn.text(_undone_text(t, done), replaces=True)
    turn.say(Toast(t._("Undone.")))


def routes(router: Router) -> None:
    router.command("statement", statement)
    router.command("invite", invite)
    router.command("staff", staff)
    router.command("undo", undo_command)
    router.choice(STAFF_BUTTON, on_staff_button)
    router.choice(UNDO_BUTTON, on_undo_button)
