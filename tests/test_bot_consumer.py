"""The consumer conversations, end to end: python-telegram-bot over HTTP to a fake Bot API."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import zxingcpp
from PIL import Image

from tests.bot_harness import SHOP, Harness, running_bot
from tests.conftest import DATABASES


@pytest.fixture(params=DATABASES)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(request.param, tmp_path) as h:
        yield h


async def test_start_greets_and_creates_member(harness: Harness) -> None:
    alice = harness.person(1001, "Alice", "en")
    before = len(harness.fake.sent)
    alice.says("/start")
    reply = await harness.fake.next_to(1001, before)
    assert "Welcome to Green Points, Alice!" in reply.text
    assert "/balance" in reply.text
    profile = await harness.services.chats.get(1001)
    assert profile is not None and profile.member_id is not None and profile.locale == "en"


async def test_qr_photo_decodes_to_a_link_the_ledger_accepts(harness: Harness) -> None:
    bob = harness.person(1002, "Bob", "en")
    bob.says("/start")
    await harness.fake.next_to(1002, 0)
    before = len(harness.fake.sent)
    bob.says("/qr")
    photo = await harness.fake.next_to(1002, before)
    assert photo.method == "sendPhoto"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(photo.files["photo"])))
    link = urlparse(decoded[0].text)
    assert link.netloc == "t.me" and link.path == "/GreenPointsTestBot"
    code = parse_qs(link.query)["start"][0]
    shop = harness.ledger_as("merchant", harness.shop_id)
    preview = await shop.preview_redemption(code, harness.shop_id, 10_000)
    assert preview.bill_fen == 10_000
    digits = "".join(ch for ch in photo.text.split("Code: ")[1].split("\n")[0] if ch.isdigit())
    assert (await shop.preview_redemption(digits, harness.shop_id, 10_000)) == preview


async def test_location_lists_nearest_first(harness: Harness) -> None:
    carol = harness.person(1003, "Carol", "en")
    before = len(harness.fake.sent)
    carol.shares_location(SHOP["lat"], SHOP["lon"])
    listing = await harness.fake.next_to(1003, before)
    lines = listing.text.splitlines()
    assert lines[0] == "Alliance merchants within 1.5 km, nearest first:"
    assert lines[1].startswith("1. 锦城绿色生活超市 · Grocery · 0 m")
    assert "测试tea" not in listing.text  # 3.3 km away
    assert ("📍1", "nm|" + str(harness.shop_id)) in listing.buttons
