"""Redemption codes and staff invites wherever they turn up: a deep link, a QR photo, typed digits.

The ledger (``ledger/codes.py``) decides whether a code is real; the bot only needs the shapes to
route a message to the right conversation, and must never send the ledger text that cannot be a
code (each unknown code counts against the cashier's throttle). The shapes are part of the
ledger's contract: 20 digits, or ``r`` + 12 base64url characters; invites ``s`` + 22.
"""

from __future__ import annotations

import asyncio
import io
import re
import unicodedata
import warnings
from urllib.parse import parse_qs, urlparse

import zxingcpp
from PIL import Image, UnidentifiedImageError

_DIGITS = re.compile(r"^\d{20}$")
_LINK_CODE = re.compile(r"^r[A-Za-z0-9_-]{12}$")
_INVITE = re.compile(r"^s[A-Za-z0-9_-]{22}$")
_SEPARATORS = re.compile(r"[\s\-–—]")
_LINK_HOSTS = {"t.me", "www.t.me", "telegram.me", "www.telegram.me"}
MAX_SIDE = 2560  # Telegram's largest photo size; bigger files are scaled down before decoding
QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


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


def decode_qr(image: bytes) -> list[str]:
    """The text of every QR code in a picture; empty when it is not a picture or has none.

    Blocking (a large photo takes tens of milliseconds): call it through ``read_qr``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(image))
            picture.draft("L", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a smaller scale, cheaply
            grey = picture.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        return []
    if max(grey.size) > MAX_SIDE:
        grey.thumbnail((MAX_SIDE, MAX_SIDE))
    found = zxingcpp.read_barcodes(grey, formats=QR_ONLY)
    return [str(code.text) for code in found if code.text]


async def read_qr(image: bytes) -> list[str]:
    """``decode_qr`` off the event loop, so one photo never stalls every other chat."""
    return await asyncio.to_thread(decode_qr, image)
