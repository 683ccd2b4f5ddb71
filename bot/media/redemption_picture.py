"""The picture a customer shows at the till: the QR code of the redemption link and, under it,
the 20 digits as a Code 128 barcode (issue 11, "Till scanners").

Phone cameras read the QR code; a till's scanner gun reads 1-D barcodes and types what it reads
followed by Enter — the 20 digits the till already accepts when typed. Both codes are centred on
one white canvas, the QR code on top with its own quiet zone, so a camera still finds the QR code
alone and ``qr.terminal_from_png`` (the console) still finds its modules from the top-left.
"""

from __future__ import annotations

import io

from PIL import Image

from bot.media import code128, qr

MODULE_PX = 3  # pixels a bar module: (145 + 20 quiet) modules = 495 px, clear after JPEG
BAR_HEIGHT_PX = 96
GAP_PX = 8  # white between the QR code's quiet zone and the barcode's top


def png(link: str, digits: str, scale: int = 8) -> bytes:
    """PNG bytes: the QR code of ``link`` (``scale`` pixels a module) above the Code 128 of
    ``digits`` (the code's 20 digits), 1 bit a pixel.

    Raises ValueError when ``digits`` cannot be a set-C barcode (odd length, not digits).
    """
    code = Image.open(io.BytesIO(qr.png(link, scale))).convert("1")
    bars = code128.image(digits, MODULE_PX, BAR_HEIGHT_PX)
    width = max(code.width, bars.width)
    canvas = Image.new("1", (width, code.height + GAP_PX + bars.height + GAP_PX), 1)
    canvas.paste(code, ((width - code.width) // 2, 0))
    canvas.paste(bars, ((width - bars.width) // 2, code.height + GAP_PX))
    out = io.BytesIO()
    canvas.save(out, format="PNG", compress_level=1)
    return out.getvalue()
