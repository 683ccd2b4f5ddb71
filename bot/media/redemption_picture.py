"""The picture a customer shows at the till: the QR code of the redemption link, and under it the
20 digits as a Code 128 barcode (issue 11, "Till scanners").

Phone cameras read the QR code; a till's scanner gun reads 1-D barcodes, and it types what it
reads followed by Enter — the 20 digits the till already accepts when typed. Code 128 packs
digits two to a symbol (its set C), so 20 digits are 165 modules with quiet zones: 2 pixels a
module keeps the bars crisp at the QR code's width. The barcode comes from python-barcode (a
maintained encoder; README says why it is worth the dependency).

The QR code keeps the picture's top-left corner as before, centred when the barcode is wider, so
``qr.terminal_from_png`` (the console) still finds its modules.
"""

from __future__ import annotations

import io

import barcode
from barcode.writer import ImageWriter
from PIL import Image

from bot.media import qr

MODULE_PX = 2  # pixels per bar module
BAR_HEIGHT_PX = 90
GAP_PX = 8  # between the QR code's quiet zone and the barcode's
_DPI = 254  # 10 pixels a millimetre, so module sizes below are pixel counts ÷ 10
_OPTIONS = {
    "module_width": MODULE_PX / 10,
    "module_height": BAR_HEIGHT_PX / 10,
    "quiet_zone": 10 * MODULE_PX / 10,  # the ten modules Code 128 asks for
    "dpi": _DPI,
    "write_text": False,  # the caption (or, on WeChat, the picture's own text) shows the digits
    "background": "white",
    "foreground": "black",
}


def code128(digits: str) -> Image.Image:
    """The barcode of ``digits`` (a redemption code's 20 digits), black on white, RGB."""
    rendered = barcode.get("code128", digits, writer=ImageWriter()).render(_OPTIONS)
    assert isinstance(rendered, Image.Image)
    return rendered.convert("RGB")


def png(link: str, digits: str, scale: int = 8) -> bytes:
    """PNG bytes: the QR code of ``link`` (``scale`` pixels a module) above the Code 128 of
    ``digits``, both centred on one white canvas."""
    code = Image.open(io.BytesIO(qr.png(link, scale))).convert("RGB")
    bars = code128(digits)
    width = max(code.width, bars.width)
    canvas = Image.new("RGB", (width, code.height + GAP_PX + bars.height), "white")
    canvas.paste(code, ((width - code.width) // 2, 0))
    canvas.paste(bars, ((width - bars.width) // 2, code.height + GAP_PX))
    out = io.BytesIO()
    canvas.convert("1").save(out, format="PNG", optimize=False, compress_level=1)
    return out.getvalue()
