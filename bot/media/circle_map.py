"""The 15-minute circle as a map-like picture (issue 13): the walk's circle around a place and
the alliance merchants in it, coloured by category, with a legend and a scale bar.

Not a street map (that would need map tiles and their licences): a local flat projection of
positions in metres, which over a kilometre or two is true to within centimetres. The caller
passes the texts, translated (category names, the title); positions are degrees, distances
metres. Pillow only, like the pool chart (README explains why no plotting library).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from bot.chat.pictures import MapLabels, MapMerchant
from bot.media import fonts

M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQUATOR = 111_320.0
CENTRE_COLOUR = (198, 40, 40)
CIRCLE_FILL = (232, 245, 233)
CIRCLE_EDGE = (46, 125, 50)
INK = (33, 33, 33)
MUTED = (117, 117, 117)
BACKGROUND = (250, 250, 250)
# Distinct, colour-blind-friendly-ish colours, one per category in the order first met.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (57, 59, 121),
    (173, 73, 74),
    (99, 121, 57),
    (214, 97, 107),
    (123, 65, 115),
)


def colours(merchants: Sequence[MapMerchant]) -> dict[str, tuple[int, int, int]]:
    """Category -> colour, in the order categories first appear (nearest first, as given)."""
    out: dict[str, tuple[int, int, int]] = {}
    for m in merchants:
        if m.category not in out:
            out[m.category] = PALETTE[len(out) % len(PALETTE)]
    return out


def _nice(metres: float) -> int:
    """The largest 1-2-5 × 10^n metres not above ``metres``."""
    power = 10 ** math.floor(math.log10(max(metres, 1)))
    return int(max(step * power for step in (1, 2, 5) if step * power <= metres))


def draw_circle_map(
    lat: float,
    lon: float,
    radius_m: float,
    merchants: Sequence[MapMerchant],
    labels: MapLabels,
    *,
    size: int = 800,
    font_path: str | None = None,
) -> bytes:
    """A PNG, ``size`` pixels tall and 1.4 × as wide (the legend on the right), north up."""
    width, height = int(size * 1.4), size
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    text_size = max(12, size // 40)
    title_font = fonts.load(text_size + 6, font_path)
    font = fonts.load(text_size, font_path)
    draw.text((20, 12), labels.title, fill=INK, font=title_font)
    top = 24 + 2 * text_size
    span = height - top - 20
    cx, cy = 20 + span / 2, top + span / 2
    scale = (span / 2) / (radius_m * 1.1)  # pixels per metre: the circle with a margin
    m_per_deg_lon = M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat))

    def pixel(p_lat: float, p_lon: float) -> tuple[float, float]:
        east = (p_lon - lon) * m_per_deg_lon
        north = (p_lat - lat) * M_PER_DEG_LAT
        return cx + east * scale, cy - north * scale

    r = radius_m * scale
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=CIRCLE_FILL, outline=CIRCLE_EDGE, width=3)
    palette = colours(merchants)
    counts: dict[str, int] = {}
    for m in merchants:
        x, y = pixel(m.lat, m.lon)
        if abs(x - cx) > span / 2 or abs(y - cy) > span / 2:
            continue
        counts[m.category] = counts.get(m.category, 0) + 1
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=palette[m.category], outline=INK)
    arm = max(6, size // 60)
    draw.line([(cx - arm, cy), (cx + arm, cy)], fill=CENTRE_COLOUR, width=4)
    draw.line([(cx, cy - arm), (cx, cy + arm)], fill=CENTRE_COLOUR, width=4)
    # Scale bar, bottom left inside the frame.
    metres = _nice(radius_m / 2)
    bar_y = height - 30
    draw.line([(30, bar_y), (30 + metres * scale, bar_y)], fill=INK, width=3)
    draw.text((30, bar_y - text_size - 6), labels.scale.format(metres=metres), fill=INK, font=font)
    # Legend: a swatch, the category's name and how many are shown.
    lx, ly = cx + span / 2 + 30, top
    for category, colour in palette.items():
        if category not in counts:
            continue
        draw.rectangle([lx, ly + 2, lx + text_size, ly + 2 + text_size], fill=colour, outline=INK)
        name = labels.categories.get(category, category)
        draw.text((lx + text_size + 10, ly), f"{name} ({counts[category]})", fill=INK, font=font)
        ly += text_size + 12
        if ly > height - 2 * text_size:
            break
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
