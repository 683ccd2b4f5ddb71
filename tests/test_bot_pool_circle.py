"""/pool (public transparency) and /circle (the 15-minute circle, admins) end to end through the
fake Bot API server, on SQLite and PostgreSQL (issue 13)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from ledger.principal import SYSTEM
from tests.bot_harness import Harness, running_bot
from tests.conftest import DATABASES

ADMIN = 4242
SHOP_LAT, SHOP_LON = 30.2341, 119.7239  # the harness's shop (tests/bot_harness.seed_shops)


@pytest.fixture(params=DATABASES)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(request.param, tmp_path, admin_ids=frozenset({ADMIN})) as h:
        yield h


def picture(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


async def test_pool_shows_the_public_figures_and_a_chart(harness: Harness) -> None:
    await harness.ledger.release(SYSTEM, harness.ledger.ctx.today())  # publishes today's record
    public = await harness.ledger.public_pool(SYSTEM, 90)
    person = harness.person(901, language_code="en")
    sent = await harness.ask(person, "/pool")
    assert sent.method == "sendPhoto"
    assert "Points pool: " in sent.text and "not a promise" in sent.text
    assert f"hash {public.days[-1].hash[:12]}…" in sent.text
    assert picture(sent.files["photo"]).size == (960, 600)


async def test_pool_speaks_chinese_with_no_record_yet(harness: Harness) -> None:
    sent = await harness.ask(harness.person(902), "/pool")
    assert "积分池" in sent.text and "并非承诺" in sent.text
    assert "已公布每日记录" not in sent.text  # nothing published yet: no record line


async def test_circle_is_for_admins_only(harness: Harness) -> None:
    sent = await harness.ask(harness.person(903, language_code="en"), "/circle 30.2 119.7")
    assert sent.text == "Sorry, that is only for alliance administrators."


async def test_circle_with_coordinates_names_the_gaps(harness: Harness) -> None:
    admin = harness.person(ADMIN, language_code="en")
    before = len(harness.fake.sent)
    admin.says(f"/circle {SHOP_LAT} {SHOP_LON}")
    first = await harness.fake.next_to(ADMIN, before)
    assert first.method == "sendPhoto"
    assert picture(first.files["photo"]).size[0] > 0
    text = await harness.fake.next_to(ADMIN, harness.fake.sent.index(first) + 1)
    assert "15-minute convenience circle" in text.text
    assert "✓ Supermarket:" in text.text  # the harness's shop is a grocery
    assert "✗ Clinic: none within the walk" in text.text
    assert "Gaps: " in text.text and "Clinic" in text.text.split("Gaps: ")[1]


async def test_circle_asks_for_a_place_and_takes_the_next_location(harness: Harness) -> None:
    admin = harness.person(ADMIN, language_code="en")
    ask = await harness.ask(admin, "/circle")
    assert "Share the place to check" in ask.text
    before = len(harness.fake.sent)
    admin.shares_location(SHOP_LAT, SHOP_LON)
    first = await harness.fake.next_to(ADMIN, before)
    assert first.method == "sendPhoto"  # the circle, not the /nearby list
    report = await harness.fake.next_to(ADMIN, harness.fake.sent.index(first) + 1)
    assert "15-minute convenience circle" in report.text
    # The state is over: the next location is /nearby again.
    before = len(harness.fake.sent)
    admin.shares_location(SHOP_LAT, SHOP_LON)
    again = await harness.fake.next_to(ADMIN, before)
    assert again.method == "sendMessage" and "15-minute convenience circle" not in again.text


def test_a_chart_is_no_qr_code_to_redraw_in_a_terminal() -> None:
    """The console redraws QR codes in block characters; a chart or map is saved, not redrawn
    (it used to end the demo's /pool with 'image index out of range')."""
    import datetime as dt

    from bot.media import qr
    from bot.media.pool_chart import ChartLabels, DayFigures, draw_pool_chart

    labels = ChartLabels("Pool", "Pool (yuan)", "Price", "none")
    days = [DayFigures(dt.date(2026, 11, d), 10_000 * d, 5_000) for d in range(1, 8)]
    with pytest.raises(ValueError):
        qr.terminal_from_png(draw_pool_chart(days, labels))
    assert qr.terminal_from_png(qr.png("r" + "A" * 12)).count("\n") > 10


async def test_circle_says_when_coordinates_are_off_the_planet(harness: Harness) -> None:
    admin = harness.person(ADMIN, language_code="en")
    before = len(harness.fake.sent)
    admin.says("/circle 999 999")
    said = await harness.fake.next_to(ADMIN, before)
    assert said.text == "That location is not on this planet. Please send it again."
    ask = await harness.fake.next_to(ADMIN, harness.fake.sent.index(said) + 1)
    assert "Share the place to check" in ask.text
    assert ask.markup["keyboard"][0][0]["text"] == "📍 Send my location"
