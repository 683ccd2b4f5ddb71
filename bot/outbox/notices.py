"""What the bot says, unasked, about a ledger event: one short message in the member's language.

The outbox stores a notice neutral (kind + plain fields, issue 9) and the person's channel
renders it when it is sent: text in the person's language on Telegram and the console, a
template message on WeChat. Points are shown as counts only: their value moves with the pool, so
no notice ever puts a price on them. Grants are told in a digest and expiry warnings gathered
into one (``gather``; the policy is ``bot.outbox.policy``, issue 12).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from bot.chat import formatting
from bot.chat.cleaning import clean_text
from bot.chat.failures import STAFF_REVOKED as STAFF_REVOKED
from bot.chat.failures import staff_revoked_text
from bot.chat.i18n import Translator
from bot.chat.replies import Notice
from ledger_client.models import Event

POINTS_EARNED = "points.earned"
VOUCHER_GRANTED = "voucher.granted"
VOUCHER_REDEEMED = "voucher.redeemed"
VOUCHER_EXPIRING = "voucher.expiring"
REDEMPTION_UNDONE = "voucher.redemption_undone"
VOUCHER_DIGEST = "voucher.digest"
WRITTEN = "written"
NOTICE_METHOD = "notice"  # an outbox row's method when it holds a neutral notice


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


def redemption_undone(t: Translator, payload: Mapping[str, Any]) -> str | None:
    """The customer's side of an undo (issue 11): vouchers back (with their old expiry), the
    points earned on the bill taken back."""
    vouchers = _int(payload, "vouchers_fen")
    points = -_int(payload, "points")  # the event carries the points taken back as negative
    lines = [
        t._("{merchant} undid your payment of {bill}.").format(
            merchant=_merchant(t, payload), bill=formatting.money(t, _int(payload, "bill_fen"))
        )
    ]
    if vouchers > 0:
        lines.append(
            t._("Your {amount} of vouchers are back, with their original expiry.").format(
                amount=formatting.money(t, vouchers)
            )
        )
    if points > 0:
        lines.append(
            t.ngettext(
                "The {points} point earned on it was taken back.",
                "The {points} points earned on it were taken back.",
                points,
            ).format(points=formatting.number(t, points))
        )
    return "\n".join(lines)


def staff_revoked(t: Translator, payload: Mapping[str, Any]) -> str | None:
    """A cashier told their staff access ended (a bot notice, not a ledger event): the owner
    feature's own words."""
    return staff_revoked_text(t, str(payload.get("merchant_name") or ""))


UNUSUAL_VOLUME = "merchant.unusual_volume"
PURCHASE_REFUNDED = "purchase.refunded"


def purchase_refunded(t: Translator, payload: Mapping[str, Any]) -> str | None:
    """A refund of the member's purchase (issue 11): the money back, the points taken back."""
    amount = _int(payload, "amount_fen")
    if amount <= 0:
        return None
    lines = [
        t._("{merchant} refunded {amount} of your purchase.").format(
            merchant=_merchant(t, payload), amount=formatting.money(t, amount)
        )
    ]
    points = -_int(payload, "points")
    if points > 0:
        lines.append(
            t.ngettext(
                "The {points} point it earned you was taken back.",
                "The {points} points it earned you were taken back.",
                points,
            ).format(points=formatting.number(t, points))
        )
    return "\n".join(lines)


def unusual_volume(t: Translator, payload: Mapping[str, Any]) -> str:
    """The admins' daily alert (issue 11): a merchant's day far above its own usual."""
    raw = payload.get("date")
    try:
        day = dt.date.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        day = None
    return t._(
        "⚠️ Unusual volume on {date}: {merchant} booked {amount} in {count} purchases; its "
        "usual day is {median}. Please check this merchant's purchases."
    ).format(
        date=formatting.day(t, day) if day else "?",
        merchant=_merchant(t, payload),
        amount=formatting.money(t, _int(payload, "day_fen")),
        count=formatting.number(t, _int(payload, "day_count")),
        median=formatting.money(t, _int(payload, "median_fen")),
    )
def voucher_digest(t: Translator, payload: Mapping[str, Any]) -> str | None:
    """A period's grants in one message (issue 12), with the part that came from points
    reaching their exit cap (issue 13)."""
    fen = _int(payload, "vouchers_fen")
    grants = _int(payload, "grants")
    if fen <= 0 or grants <= 0:
        return None
    since = _moment(payload, "since")
    lines = [
        t.ngettext(
            "Since {date} your points became {amount} of vouchers in {count} release.",
            "Since {date} your points became {amount} of vouchers in {count} releases.",
            grants,
        ).format(
            date=formatting.day(t, since) if since is not None else "—",
            amount=formatting.money(t, fen),
            count=formatting.number(t, grants),
        )
    ]
    capped_fen = _int(payload, "capped_fen")
    if capped_fen > 0:
        capped_points = _int(payload, "capped_points")
        lines.append(
            t.ngettext(
                "Of these, {amount} came from {points} point that reached its cap and became "
                "vouchers.",
                "Of these, {amount} came from {points} points that reached their cap and became "
                "vouchers.",
                capped_points,
            ).format(
                amount=formatting.money(t, capped_fen),
                points=formatting.number(t, capped_points),
            )
        )
    expires = _moment(payload, "expires_at")
    if expires is not None:
        lines.append(
            t._("The first of them expire on {date}.").format(date=formatting.day(t, expires))
        )
    lines.append(t._("Show /qr at the till to use them."))
    return "\n".join(lines)


def written(t: Translator, payload: Mapping[str, Any]) -> str | None:
    """A text written before notices were stored neutral (migration 0004), as it was."""
    text = payload.get("text")
    return text if isinstance(text, str) and text else None


Renderer = Callable[[Translator, Mapping[str, Any]], "str | None"]

RENDERERS: dict[str, Renderer] = {
    POINTS_EARNED: points_earned,
    VOUCHER_GRANTED: voucher_granted,
    VOUCHER_REDEEMED: voucher_redeemed,
    VOUCHER_EXPIRING: voucher_expiring,
    REDEMPTION_UNDONE: redemption_undone,
    STAFF_REVOKED: staff_revoked,
    PURCHASE_REFUNDED: purchase_refunded,
    VOUCHER_DIGEST: voucher_digest,
    WRITTEN: written,
}
EVENT_KINDS = frozenset(
    {
        POINTS_EARNED, VOUCHER_GRANTED, VOUCHER_REDEEMED, VOUCHER_EXPIRING, REDEMPTION_UNDONE,
        PURCHASE_REFUNDED,
    }
)
"""The member events a person is told of (the admins' unusual-volume alert is read apart)."""


def render(event: Event, t: Translator) -> str | None:
    """The notice for a member event, or None for events nobody is told about."""
    renderer = RENDERERS.get(event.type) if event.type in EVENT_KINDS else None
    if renderer is None or event.member_id is None:
        return None
    return renderer(t, event.payload)


def as_notice(event: Event) -> Notice | None:
    """A member event as the neutral notice a channel renders (kind + the event's plain fields:
    ``points``, ``amount_fen``, ``merchant_name``, moments as ISO strings), or None for events
    nobody is told about."""
    if event.type not in EVENT_KINDS or event.member_id is None:
        return None
    fields = {
        key: value
        for key, value in event.payload.items()
        if isinstance(value, str | int | type(None)) and not isinstance(value, bool)
    }
    for flag in ("green", "capped"):  # booleans as 0/1: fields are str, int or None
        if isinstance(event.payload.get(flag), bool):
            fields[flag] = int(event.payload[flag])
    return Notice(event.type, fields)


def notice_text(notice: Notice, t: Translator) -> str | None:
    """A neutral notice as one message in ``t``'s language, for channels that send text (the
    same words as ``render``); None when it says nothing (no points earned)."""
    renderer = RENDERERS.get(notice.kind)
    return renderer(t, notice.fields) if renderer is not None else None


def expiry_of(payload: Mapping[str, Any]) -> dt.datetime | None:
    """The ``expires_at`` of an event's payload as naive UTC, or None."""
    moment = _moment(payload, "expires_at")
    if moment is not None and moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def as_payload(notice: Notice) -> dict[str, Any]:
    """A notice as an outbox row's payload (``method`` ``notice``)."""
    return {"kind": notice.kind, "fields": dict(notice.fields)}


def from_payload(payload: Mapping[str, Any]) -> Notice:
    """An outbox row's payload as the notice it holds; raises KeyError or ValueError for a
    payload that is not one (no kind, an unknown kind)."""
    fields = payload.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise ValueError("a notice's fields are a mapping")
    return Notice(str(payload["kind"]), dict(fields))


def _earliest(values: list[Any]) -> str | None:
    moments = sorted(v for v in values if isinstance(v, str) and _valid(v))
    return moments[0] if moments else None


def _valid(iso: str) -> bool:
    try:
        dt.datetime.fromisoformat(iso)
    except ValueError:
        return False
    return True


def gather(kind: str, held: list[Mapping[str, Any]]) -> Notice:
    """One notice for a person's held notices of ``kind`` (their fields), in the order held.

    ``voucher.granted`` → ``voucher.digest``: ``grants`` (how many), ``vouchers_fen`` (their
    sum), ``capped_fen`` and ``capped_points`` (the grants the exit cap made, issue 13), ``since``
    (the first release date) and ``expires_at`` (the earliest expiry). ``voucher.expiring`` →
    one ``voucher.expiring``: the fen summed, the earliest expiry. Amounts are integer fen.
    """
    if kind == VOUCHER_GRANTED:
        capped = [f for f in held if _int(f, "capped")]
        return Notice(
            VOUCHER_DIGEST,
            {
                "grants": len(held),
                "vouchers_fen": sum(_int(f, "vouchers_fen") for f in held),
                "capped_fen": sum(_int(f, "vouchers_fen") for f in capped),
                "capped_points": sum(_int(f, "points_burned") for f in capped),
                "since": _earliest([f.get("release_date") for f in held]),
                "expires_at": _earliest([f.get("expires_at") for f in held]),
            },
        )
    if kind == VOUCHER_EXPIRING:
        return Notice(
            VOUCHER_EXPIRING,
            {
                "vouchers_fen": sum(_int(f, "vouchers_fen") for f in held),
                "expires_at": _earliest([f.get("expires_at") for f in held]),
            },
        )
    raise ValueError(f"{kind} notices are not gathered")
