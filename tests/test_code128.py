"""Issue 11, "Till scanners": the Code 128 under the redemption QR code reads back as its 20 digits.

The encoder (bot/media/code128.py) is checked three ways: its pattern table against the rules of
ISO/IEC 15417 and, module for module, against zxing-cpp's own Code 128 writer (a second,
independent implementation); every digit pair 00–99 and random codes round-trip through the
decoder the bot uses (zxing-cpp); the two codes python-barcode got wrong read back exactly.
"""

from __future__ import annotations

import io

import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from bot.media import code128, qr, redemption_picture, scan
from tests.test_bot_merchant import photo_of_screen  # one photo of a phone screen for all

CODE128 = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.Code128)
REVERTED = ("99999999999999999999", "84977356829406000840")  # misread under python-barcode
LINK = "https://t.me/GreenPointsTestBot?start=rAbCdEfGhIjKl"


def read_bars(picture: Image.Image) -> list[str]:
    return [str(found.text) for found in zxingcpp.read_barcodes(picture, formats=CODE128)]


def test_the_pattern_table_keeps_the_standards_rules() -> None:
    """ISO/IEC 15417: 107 distinct patterns; 0–105 are 3 bars + 3 spaces of 1–4 modules summing
    to 11 with an even bar total; the stop is 2331112; the start C pattern is 211232."""
    assert len(code128.PATTERNS) == 107 and len(set(code128.PATTERNS)) == 107
    for value, pattern in enumerate(code128.PATTERNS[:106]):
        widths = [int(w) for w in pattern]
        assert len(widths) == 6 and all(1 <= w <= 4 for w in widths), value
        assert sum(widths) == 11, value
        assert sum(widths[0::2]) % 2 == 0, value  # the standard's even bar-module parity
    assert code128.PATTERNS[code128.STOP] == "2331112"
    assert code128.PATTERNS[code128.START_C] == "211232"
    assert code128.PATTERNS[0] == "212222" and code128.PATTERNS[102] == "411131"


def test_symbols_and_checksum_follow_the_standard() -> None:
    # The standard's worked example for set C: start C 105, then 12 34 56 at weights 1, 2, 3.
    assert code128.symbols("123456") == [105, 12, 34, 56, (105 + 12 + 2 * 34 + 3 * 56) % 103, 106]
    modules = code128.modules("84977356829406000840")
    assert len(modules) == 10 + 11 * 12 + 13 + 10  # quiet, start + 10 pairs + check, stop, quiet
    assert not any(modules[:10]) and not any(modules[-10:])
    assert modules[10] and modules[-11]  # the symbol starts and the stop ends on a bar
    for bad in ("", "123", "12a4", "١٢"):
        with pytest.raises(ValueError):
            code128.symbols(bad)


@pytest.mark.parametrize("pair", range(100))
def test_every_pair_matches_zxings_writer_and_reads_back(pair: int) -> None:
    digits = f"{pair:02d}" * 10
    theirs = zxingcpp.create_barcode(digits, zxingcpp.BarcodeFormat.Code128)
    drawn = zxingcpp.write_barcode_to_image(theirs, scale=1, add_quiet_zones=False, add_hrt=False)
    row = Image.frombytes("L", (drawn.shape[1], drawn.shape[0]), bytes(drawn))
    assert [row.getpixel((x, 0)) < 128 for x in range(row.width)] == code128.modules(digits)[
        code128.QUIET_ZONE : -code128.QUIET_ZONE
    ]
    assert read_bars(code128.image(digits, module_px=2)) == [digits]


@pytest.mark.parametrize("digits", REVERTED)
@pytest.mark.parametrize("module_px", [1, 2, 3])
def test_the_codes_python_barcode_got_wrong_read_back_at_every_module_width(
    digits: str, module_px: int
) -> None:
    assert read_bars(code128.image(digits, module_px=module_px)) == [digits]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=20, max_size=20))
def test_random_codes_read_back_under_the_qr_code(digits: str) -> None:
    picture = Image.open(io.BytesIO(redemption_picture.png(LINK, digits)))
    assert read_bars(picture) == [digits]


@pytest.mark.parametrize("digits", REVERTED)
def test_the_picture_reads_as_one_qr_code_and_one_barcode_even_photographed(digits: str) -> None:
    png = redemption_picture.png(LINK, digits)
    assert scan.decode_qr(png) == [LINK]  # the QR code still reads alone
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert sorted((str(f.format), str(f.text)) for f in found) == sorted(
        [(str(zxingcpp.BarcodeFormat.QRCode), LINK), (str(zxingcpp.BarcodeFormat.Code128), digits)]
    )
    # A phone's photo of the screen (tilted, JPEG): both still read.
    photo = Image.open(io.BytesIO(photo_of_screen(png)))
    assert read_bars(photo) == [digits]
    assert scan.decode_qr(photo_of_screen(png)) == [LINK]
    # The console still draws the QR code from the top-left of the picture.
    assert qr.terminal_from_png(png) == qr.terminal_from_png(qr.png(LINK))

