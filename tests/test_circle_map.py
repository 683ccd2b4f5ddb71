"""The circle map (issue 13) is a real PNG: decoded here, the centre, the circle's edge and each
merchant sit where their metres from the centre put them, north up, coloured by category."""

from __future__ import annotations

import io
import math

from PIL import Image

from bot.media.circle_map import (
    CENTRE_COLOUR,
    CIRCLE_EDGE,
    PALETTE,
    MapLabels,
    MapMerchant,
    draw_circle_map,
)

LAT, LON = 30.2336, 119.7247
LABELS = MapLabels("一刻钟便民生活圈", {"grocery": "超市", "pharmacy": "药店"}, "{metres} 米")


def at(north_m: float, east_m: float) -> tuple[float, float]:
    """A point ``north_m`` north and ``east_m`` east of the centre (independent arithmetic)."""
    r = 6_371_008.8
    dlat = math.degrees(north_m / r)
    dlon = math.degrees(east_m / (r * math.cos(math.radians(LAT))))
    return LAT + dlat, LON + dlon


def near(
    image: Image.Image, x: float, y: float, colour: tuple[int, int, int], reach: int = 3
) -> bool:
    px = image.load()
    assert px is not None
    return any(
        px[int(x) + dx, int(y) + dy] == colour
        for dx in range(-reach, reach + 1)
        for dy in range(-reach, reach + 1)
    )


def test_merchants_and_the_circle_are_where_their_metres_put_them() -> None:
    merchants = [
        MapMerchant(*at(500, 0), "grocery"),  # due north
        MapMerchant(*at(0, -700), "pharmacy"),  # due west
        MapMerchant(*at(-300, 300), "grocery"),
        MapMerchant(*at(5000, 0), "pharmacy"),  # far outside the frame: not drawn
    ]
    png = draw_circle_map(LAT, LON, 1000, merchants, LABELS, size=600)
    assert png.startswith(b"\x89PNG")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (840, 600)
    # Layout as documented: a square map under the title, the circle at 1/1.1 of its half.
    top = 24 + 2 * 15
    span = 600 - top - 20
    cx, cy = 20 + span / 2, top + span / 2
    scale = (span / 2) / 1100
    assert near(image, cx, cy, CENTRE_COLOUR)
    assert near(image, cx, cy - 1000 * scale, CIRCLE_EDGE)  # the walk's edge, north
    assert near(image, cx + 1000 * scale, cy, CIRCLE_EDGE)  # and east
    grocery, pharmacy = PALETTE[0], PALETTE[1]  # in the order categories first appear
    assert near(image, cx, cy - 500 * scale, grocery)
    assert near(image, cx - 700 * scale, cy, pharmacy)
    assert near(image, cx + 300 * scale, cy + 300 * scale, grocery)
    assert not near(image, cx + 300 * scale, cy + 300 * scale, pharmacy)
    # The legend's swatches, right of the map.
    legend = image.crop((int(cx + span / 2), 0, image.width, image.height))
    found = {c for _n, c in legend.getcolors(maxcolors=1 << 16) or []}
    assert grocery in found and pharmacy in found


def test_an_empty_circle_is_still_a_map() -> None:
    image = Image.open(io.BytesIO(draw_circle_map(LAT, LON, 1000, [], LABELS))).convert("RGB")
    assert image.size == (1120, 800)
    colours = {c for _n, c in image.getcolors(maxcolors=1 << 16) or []}
    assert CENTRE_COLOUR in colours and CIRCLE_EDGE in colours
    assert not colours & set(PALETTE[:2])
