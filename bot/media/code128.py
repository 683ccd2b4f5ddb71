"""Code 128 in code set C: an even number of digits as a 1-D barcode a till's scanner gun reads.

Why our own encoder: python-barcode was tried and reverted (commit f42fbf5): zxing-cpp read some
of its codes wrong ("9999…9" as 18 digits) or not at all ("84977356829406000840"). Set C alone
is small enough to get exactly right here: every symbol is two digits, so a redemption code's 20
digits are always start C + 10 symbols + checksum + stop = 145 modules, and the checksum is the
standard's mod-103 sum. Source of the rules: ISO/IEC 15417 (Code 128 bar code symbology
specification) — the pattern table (values 0–105 are 3 bars and 3 spaces of 1–4 modules summing
to 11; the stop is 2331112, 13 modules), start C = 105, check = (105 + Σ i·value_i) mod 103, and a
quiet zone of at least 10 modules on each side.

Widths are in modules; pictures are drawn at a whole number of pixels a module so no bar is
smeared across a pixel boundary (a scanner measures the ratio of bar widths).
"""

from __future__ import annotations

from PIL import Image

START_C = 105
STOP = 106
QUIET_ZONE = 10  # modules on each side, the standard's minimum

# ISO/IEC 15417 table 1: bar, space, bar, space, bar, space widths in modules for values 0–106
# (106 is the stop pattern, which ends with a 2-module bar).
PATTERNS: tuple[str, ...] = (
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212",
    "221213", "221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221",
    "223211", "221132", "221231", "213212", "223112", "312131", "311222", "321122", "321221",
    "312212", "322112", "322211", "212123", "212321", "232121", "111323", "131123", "131321",
    "112313", "132113", "132311", "211313", "231113", "231311", "112133", "112331", "132131",
    "113123", "113321", "133121", "313121", "211331", "231131", "213113", "213311", "213131",
    "311123", "311321", "331121", "312113", "312311", "332111", "314111", "221411", "431111",
    "111224", "111422", "121124", "121421", "141122", "141221", "112214", "112412", "122114",
    "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111", "111242",
    "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141",
    "214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311",
    "113141", "114131", "311141", "411131", "211412", "211214", "211232", "2331112",
)


def symbols(digits: str) -> list[int]:
    """The symbol values of ``digits``: start C, one value per digit pair, checksum, stop.

    Raises ValueError when ``digits`` is empty, odd in length or not all ASCII digits (set C
    encodes pairs only; a redemption code is always 20 digits).
    """
    if not digits or len(digits) % 2 or not (digits.isascii() and digits.isdigit()):
        raise ValueError("code set C encodes a non-empty, even number of ASCII digits")
    data = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    check = (START_C + sum(weight * value for weight, value in enumerate(data, 1))) % 103
    return [START_C, *data, check, STOP]


def modules(digits: str) -> list[bool]:
    """The barcode of ``digits`` as modules, True = bar, with the quiet zone on both sides.

    Raises ValueError as ``symbols`` does.
    """
    out = [False] * QUIET_ZONE
    for value in symbols(digits):
        for index, width in enumerate(PATTERNS[value]):
            out += [index % 2 == 0] * int(width)
    return out + [False] * QUIET_ZONE


def image(digits: str, module_px: int = 3, height_px: int = 80) -> Image.Image:
    """A black-on-white 1-bit picture of the barcode, ``module_px`` pixels a module (whole pixels
    keep every bar's width exact) and ``height_px`` pixels tall, quiet zones included.

    Raises ValueError as ``symbols`` does, or when a size is below one pixel.
    """
    if module_px < 1 or height_px < 1:
        raise ValueError("module width and height are whole pixels, at least 1")
    bars = modules(digits)
    row = Image.new("1", (len(bars), 1), 1)
    row.putdata([0 if bar else 1 for bar in bars])
    return row.resize((row.width * module_px, height_px), Image.Resampling.NEAREST)
