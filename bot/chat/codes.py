"""Codes in text: a redemption code as typed, linked or scanned, and a staff invite.

Pure text rules, part of the core because the till reads codes from typed text, a scanner's
result and a photo's QR code alike (``bot.media.scan`` reads the photo, then these decide).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import parse_qs, urlparse

_DIGITS = re.compile(r"^\d{20}$")
_LINK_CODE = re.compile(r"^r[A-Za-z0-9_-]{12}$")
_INVITE = re.compile(r"^s[A-Za-z0-9_-]{22}$")
_SEPARATORS = re.compile(r"[\s\-–—]")
_LINK_HOSTS = {"t.me", "www.t.me", "telegram.me", "www.telegram.me"}


def is_invite(payload: str) -> bool:
    return bool(_INVITE.match(payload.strip()))


def start_payload(text: str) -> str | None:
    """The ``start`` parameter of a bot deep link (https://t.me/<bot>?start=…, tg://resolve…)."""
    try:
        url = urlparse(text.strip())
    except ValueError:
        return None
    if not (
        (url.scheme in {"https", "http"} and url.netloc.lower() in _LINK_HOSTS)
        or (url.scheme == "tg" and url.netloc == "resolve")
    ):
        return None
    values = parse_qs(url.query).get("start")
    return values[0] if values else None


def redemption_code(text: str) -> str | None:
    """The code in a deep link, a bare link code or 20 typed digits; None for anything else.

    Digits come back without the spaces or dashes people group them with, and full-width digits
    from a Chinese keyboard are read as digits.
    """
    text = unicodedata.normalize("NFKC", text).strip()
    payload = start_payload(text)
    if payload is not None:
        text = payload
    digits = _SEPARATORS.sub("", text)
    if _DIGITS.match(digits):
        return digits
    if _LINK_CODE.match(text):
        return text
    return None
