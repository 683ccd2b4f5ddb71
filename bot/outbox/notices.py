"""What the bot says, unasked, about a ledger event: one short message in the member's language.

Texts are rendered when the event is read (in the language the person has then) and stored in
the outbox, so a resend after a crash says exactly what the first attempt said. Points are shown
as counts only: their value moves with the pool, so no notice ever puts a price on them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from bot.chat import formatting
from bot.chat.cleaning import clean_text
from bot.chat.i18n import Translator
from bot.chat.replies import Notice
from ledger_client.models import Event

POINTS_EARNED = "points.earned"
VOUCHER_GRANTED = "voucher.granted"
VOUCHER_REDEEMED = "voucher.redeemed"
VOUCHER_EXPIRING = "voucher.expiring"


def _int(payload: Mapping[str, Any], key: str) -> int:
    value = payload.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _moment(payload: Mapping[str, Any], key: str) -> dt.datetime | None:
    raw = payload.get(key)
    if not isinstance(raw, str):
        return None
    try:
        return dt.datetime.fromisoformat(raw)
    except ValueError:
        return None


def _merchant(t: Translator, payload: Mapping[str, Any]) -> str:
    name = payload.get("merchant_name")
    shown = clean_text(name, single_line=True) if isinstance(name, str) else ""
    return shown or t._("an alliance merchant")


def points_earned(t: Translator, payload: Mapping[str, Any]) -> str | None:
    points = _int(payload, "points")
    if points <= 0:
        return None
    lines = [
        t.ngettext(
            "You earned {points} point at {merchant} on a purchase of {amount}.",
            "You earned {points} points at {merchant} on a purchase of {amount}.",
            points,
        ).format(
            points=formatting.number(t, points),
            merchant=_merchant(t, payload),
            amount=formatting.money(t, _int(payload, "amount_fen")),
        )
    ]
    if payload.get("green"):
        lines.append(t._("Thank you for choosing green: your green bonus is included."))
    return "\n".join(lines)


def voucher_granted(t: Translator, payload: Mapping[str, Any]) -> str | None:
    fen = _int(payload, "vouchers_fen")
    if fen <= 0:
        return None
    lines = [
        t._("New vouchers: {amount} from today's release of your points.").format(
            amount=formatting.money(t, fen)
        )
    ]
    expires = _moment(payload, "expires_at")
    if expires is not None:
        lines.append(
            t._("Use them at any alliance merchant by {date}.").format(
                date=formatting.day(t, expires)
            )
        )
    lines.append(t._("Show /qr at the till to use them."))
    return "\n".join(lines)


def voucher_redeemed(t: Translator, payload: Mapping[str, Any]) -> str | None:
    vouchers = _int(payload, "vouchers_fen")
    points = _int(payload, "points")
    merchant = _merchant(t, payload)
    paid = formatting.money(t, _int(payload, "pay_fen"))
    if vouchers > 0:
        first = t._("You used {vouchers} of vouchers at {merchant} and paid {paid}.").format(
            vouchers=formatting.money(t, vouchers), merchant=merchant, paid=paid
        )
    else:
        first = t._("You paid {paid} at {merchant}.").format(paid=paid, merchant=merchant)
    lines = [first]
    if points > 0:
        lines.append(
            t.ngettext(
                "The purchase earned you {points} point.",
                "The purchase earned you {points} points.",
                points,
            ).format(points=formatting.number(t, points))
        )
    return "\n".join(lines)


def voucher_expiring(t: Translator, payload: Mapping[str, Any]) -> str | None:
    fen = _int(payload, "vouchers_fen")
    expires = _moment(payload, "expires_at")
    if fen <= 0 or expires is None:
        return None
    return "\n".join(
        [
            t._("Reminder: {amount} of your vouchers expire on {date}.").format(
                amount=formatting.money(t, fen), date=formatting.day(t, expires)
            ),
            t._("Show /qr at any alliance merchant before then to use them."),
        ]
    )


Renderer = Callable[[Translator, Mapping[str, Any]], "str | None"]

RENDERERS: dict[str, Renderer] = {
    POINTS_EARNED: points_earned,
    VOUCHER_GRANTED: voucher_granted,
    VOUCHER_REDEEMED: voucher_redeemed,
    VOUCHER_EXPIRING: voucher_expiring,
}


def render(event: Event, t: Translator) -> str | None:
    """The notice for a member event, or None for events nobody is told about."""
    renderer = RENDERERS.get(event.type)
    if renderer is None or event.member_id is None:
        return None
    return renderer(t, event.payload)


def as_notice(event: Event) -> Notice | None:
    """A member event as the neutral notice a channel renders (kind + the event's plain fields:
    ``points``, ``amount_fen``, ``merchant_name``, moments as ISO strings), or None for events
    nobody is told about."""
    if event.type not in RENDERERS or event.member_id is None:
        return None
    fields = {
        key: value
        for key, value in event.payload.items()
        if isinstance(value, str | int | type(None)) and not isinstance(value, bool)
    }
    if isinstance(event.payload.get("green"), bool):
        fields["green"] = int(event.payload["green"])
    return Notice(event.type, fields)


def notice_text(notice: Notice, t: Translator) -> str | None:
    """A neutral notice as one message in ``t``'s language, for channels that send text (the
    same words as ``render``); None when it says nothing (no points earned)."""
    renderer = RENDERERS.get(notice.kind)
    return renderer(t, notice.fields) if renderer is not None else None
