"""The pool chart (issue 13) is a real PNG: decoded here, its size is what was asked, and the
pool and price lines are where a rising or falling history puts them."""

from __future__ import annotations

import datetime as dt
import io

from PIL import Image

from bot.media.pool_chart import POOL_COLOUR, PRICE_COLOUR, ChartLabels, DayFigures, draw_pool_chart

LABELS = ChartLabels("积分池与积分价值", "积分池（元）", "积分价值（分/积分）", "暂无记录")
START = dt.date(2026, 11, 1)


def days(pools: list[int], points: list[int]) -> list[DayFigures]:
    return [
        DayFigures(START + dt.timedelta(days=i), pool, pts)
        for i, (pool, pts) in enumerate(zip(pools, points, strict=True))
    ]


def decode(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


def columns(image: Image.Image, colour: tuple[int, int, int]) -> dict[int, list[int]]:
    """x -> the ys where ``colour`` is drawn."""
    out: dict[int, list[int]] = {}
    px = image.load()
    assert px is not None
    for x in range(image.width):
        for y in range(image.height):
            if px[x, y] == colour:
                out.setdefault(x, []).append(y)
    return out


def test_a_rising_pool_and_price_draw_rising_lines() -> None:
    # Pool grows 1,000 yuan a day, points grow slower: the price rises too.
    history = days(
        [100_000 * (i + 1) for i in range(30)], [90_000 * (i + 1) - i * 5_000 for i in range(30)]
    )
    image = decode(draw_pool_chart(history, LABELS, width=800, height=500))
    assert image.size == (800, 500)
    pool = columns(image, POOL_COLOUR)
    price = columns(image, PRICE_COLOUR)
    assert pool and price
    # The pool panel sits above the price panel.
    assert max(max(ys) for ys in pool.values()) < min(min(ys) for ys in price.values())
    for line in (pool, price):
        first, last = min(line), max(line)
        assert last - first > 500  # spans the width
        assert min(line[last]) < min(line[first])  # higher on the right: rising


def test_a_falling_price_falls_and_one_day_is_a_dot() -> None:
    falling = days([500_000] * 10, [400_000 + 30_000 * i for i in range(10)])
    price = columns(decode(draw_pool_chart(falling, LABELS)), PRICE_COLOUR)
    assert min(price[max(price)]) > min(price[min(price)])
    one = columns(decode(draw_pool_chart(falling[:1], LABELS)), POOL_COLOUR)
    assert 0 < max(one) - min(one) <= 8  # a dot, not a line


def test_no_days_is_a_picture_that_says_so() -> None:
    image = decode(draw_pool_chart([], LABELS, width=640, height=360))
    assert image.size == (640, 360)
    assert not columns(image, POOL_COLOUR) and not columns(image, PRICE_COLOUR)
    assert len(image.getcolors(maxcolors=1 << 16) or []) > 1  # the title and the "no records" text
