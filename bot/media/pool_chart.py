"""The public pool and price history as a picture (issue 13: ``/pool`` shows it as a chart).

Pillow, not a plotting library: two line panels, a few grid lines and date ticks are a page of
drawing code, and Pillow is already here (QR codes); matplotlib would add ~40 MB and a font
cache to build for one chart. The caller passes the labels, already translated, so this module
knows no language; fonts come from ``bot.media.fonts`` (a CJK font where one is installed).

Amounts arrive as integers (fen, points); floats appear only as pixel positions.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from bot.chat.pictures import ChartLabels, DayFigures
from bot.media import fonts

POOL_COLOUR = (46, 125, 50)  # green: the points pool
POOL_FILL = (200, 230, 201)
PRICE_COLOUR = (21, 101, 192)  # blue: the point price
GRID = (224, 224, 224)
INK = (33, 33, 33)
MUTED = (117, 117, 117)
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    step = (high - low) / count
    return [low + step * i for i in range(count + 1)]


def _span(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high - low < 1e-9:
        pad = abs(high) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.08
    return max(0.0, low - pad) if low >= 0 else low - pad, high + pad


def _number(value: float, decimals: int) -> str:
    return f"{value:,.{decimals}f}"


def _panel(
    draw: ImageDraw.ImageDraw,
    box: Box,
    values: Sequence[float],
    title: str,
    colour: tuple[int, int, int],
    fill: tuple[int, int, int] | None,
    decimals: int,
    size: int,
    font_path: str | None,
) -> list[tuple[float, float]]:
    """One panel: title, grid, y labels and the line; returns the line's pixel points."""
    label_font = fonts.load(size, font_path)
    draw.text((box.left, box.top - size - 6), title, fill=INK, font=label_font)
    low, high = _span(values)
    tick_font = fonts.load(max(10, size - 4), font_path)
    for tick in _ticks(low, high):
        y = box.bottom - (tick - low) / (high - low) * (box.bottom - box.top)
        draw.line([(box.left, y), (box.right, y)], fill=GRID, width=1)
        text = _number(tick, decimals)
        width = draw.textlength(text, font=tick_font)
        draw.text(
            (box.left - 8 - width, y - size / 2), text, fill=MUTED, font=tick_font
        )
    draw.rectangle([box.left, box.top, box.right, box.bottom], outline=MUTED, width=1)
    n = len(values)
    xs = [
        box.left + (box.right - box.left) * (i / (n - 1) if n > 1 else 0.5) for i in range(n)
    ]
    points = [
        (x, box.bottom - (v - low) / (high - low) * (box.bottom - box.top))
        for x, v in zip(xs, values, strict=True)
    ]
    if fill is not None and n > 1:
        draw.polygon(
            [(points[0][0], box.bottom), *points, (points[-1][0], box.bottom)], fill=fill
        )
    if n > 1:
        draw.line(points, fill=colour, width=3, joint="curve")
    if n <= 31:
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    return points


def draw_pool_chart(
    days: Sequence[DayFigures],
    labels: ChartLabels,
    *,
    width: int = 960,
    height: int = 600,
    font_path: str | None = None,
) -> bytes:
    """A PNG (``width`` × ``height`` pixels) of the pool (yuan) and the point price (fen per
    point) over ``days``, oldest first; with no days, the ``empty`` text instead of panels."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    size = max(12, height // 36)
    draw.text((24, 14), labels.title, fill=INK, font=fonts.load(size + 6, font_path))
    if not days:
        draw.text(
            (24, height // 2), labels.empty, fill=MUTED, font=fonts.load(size + 2, font_path)
        )
        return _png(image)
    left, right = 110, width - 30
    top = 40 + 2 * size + 16
    gap = 2 * size + 24
    panel_h = (height - top - gap - 2 * size - 20) // 2
    pool_box = Box(left, top, right, top + panel_h)
    price_box = Box(left, top + panel_h + gap, right, top + 2 * panel_h + gap)
    _panel(
        draw,
        pool_box,
        [d.pool_fen / 100 for d in days],
        labels.pool,
        POOL_COLOUR,
        POOL_FILL,
        2,
        size,
        font_path,
    )
    points = _panel(
        draw,
        price_box,
        [d.fen_per_point for d in days],
        labels.price,
        PRICE_COLOUR,
        None,
        4,
        size,
        font_path,
    )
    tick_font = fonts.load(max(10, size - 4), font_path)
    every = max(1, len(days) // 6)
    for i in range(0, len(days), every):
        text = days[i].date.strftime("%m-%d")
        x = points[i][0] - draw.textlength(text, font=tick_font) / 2
        draw.text((x, price_box.bottom + 6), text, fill=MUTED, font=tick_font)
    return _png(image)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
