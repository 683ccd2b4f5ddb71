"""Core notices as WeChat template data (WECHAT.md rule 3, DESIGN.md "Notices").

A template message carries structured fields only (each at most 20 characters, one line, no
emoji), so a notice's plain values are formatted here: fen as yuan with two decimals, moments in
Beijing time, names cleaned and shortened. Which template key receives which value depends on
the template the operator picked in the console, so the key names are part of the mapping
handed in (defaults follow the public library's common keys).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from bot.channels.wechat.api import template_field
from bot.chat.cleaning import clean_name
from bot.chat.replies import Notice, NoticeValue
from bot.outbox.mass_sends import BEIJING

# Our value name -> the template's key, per notice kind.
DEFAULT_KEYS: dict[str, dict[str, str]] = {
    "points.earned": {"merchant": "thing1", "points": "number2", "amount": "amount3"},
    "voucher.granted": {"amount": "amount1", "expires_at": "time2"},
    "voucher.digest": {"amount": "amount1", "expires_at": "time2"},  # the grants' template
    "voucher.expiring": {"amount": "amount1", "expires_at": "time2"},
    "voucher.redeemed": {"merchant": "thing1", "amount": "amount2"},
    "redemption.receipt": {"merchant": "thing1", "amount": "amount2", "voucher": "amount3"},
    # Issue 11: an undone payment (vouchers given back) and a cashier's access revoked.
    "voucher.redemption_undone": {"merchant": "thing1", "amount": "amount2"},
    "staff.revoked": {"merchant": "thing1"},
}


def yuan(fen: int) -> str:
    """Integer fen as ``¥12.50`` (no floats on the way)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole}.{cents:02d}"


def beijing_time(iso_utc: str) -> str:
    moment = dt.datetime.fromisoformat(iso_utc.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _value(name: str, raw: NoticeValue) -> str | None:
    if raw is None:
        return None
    if name.endswith("_fen") and isinstance(raw, int):
        return yuan(raw)
    if name == "expires_at" and isinstance(raw, str):
        return beijing_time(raw)
    if name == "points" and isinstance(raw, int):
        return str(raw)
    return clean_name(str(raw), limit=64)


def _ledger_names(fields: Mapping[str, NoticeValue]) -> dict[str, NoticeValue]:
    """The ledger's event fields under the names the templates use: ``merchant_name`` is the
    ``merchant``; ``vouchers_fen`` is the notice's ``amount`` where it has none of its own (a
    grant, an expiry, a redemption), else its ``voucher`` (a receipt's bill is the amount)."""
    out = dict(fields)
    if "merchant_name" in out and "merchant" not in out:
        out["merchant"] = out.pop("merchant_name")
    if "vouchers_fen" in out:
        target = "voucher_fen" if "amount_fen" in out else "amount_fen"
        out.setdefault(target, out.pop("vouchers_fen"))
    return out


def template_data(
    notice: Notice, keys: Mapping[str, Mapping[str, str]] = DEFAULT_KEYS
) -> dict[str, str]:
    """The template's data for a notice: {template key: value within the field rules}.

    ``amount_fen`` feeds ``amount``, ``voucher_fen`` feeds ``voucher``; fields the notice lacks
    are left out. Raises KeyError for a kind with no key mapping (announcements are mass
    sends, not templates).
    """
    mapping = keys[notice.kind]
    values: dict[str, str] = {}
    for name, raw in _ledger_names(notice.fields).items():
        text = _value(name, raw)
        ours = name.removesuffix("_fen")
        if text is not None and ours in mapping:
            values[mapping[ours]] = template_field(text)
    return values
