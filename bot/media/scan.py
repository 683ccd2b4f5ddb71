"""Codes read from photos: the QR codes in a picture (zxing-cpp); what the texts mean is
``bot.chat.codes``'s (re-exported here). Redemption codes and staff invites wherever they turn
up: a deep link, a QR photo, typed digits.

The ledger (``ledger/codes.py``) decides whether a code is real; the bot only needs the shapes to
route a message to the right conversation, and must never send the ledger text that cannot be a
code (each unknown code counts against the cashier's throttle). The shapes are part of the
ledger's contract: 20 digits, or ``r`` + 12 base64url characters; invites ``s`` + 22.
"""

from __future__ import annotations

import asyncio
import io
import warnings

import zxingcpp
from PIL import Image, UnidentifiedImageError

from bot.chat.codes import is_invite, redemption_code, start_payload

__all__ = ["decode_qr", "is_invite", "read_qr", "redemption_code", "start_payload"]
MAX_SIDE = 2560  # Telegram's largest photo size; bigger files are scaled down before decoding
QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


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
