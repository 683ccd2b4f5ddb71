"""WeChat deliveries as core events and core replies as WeChat messages (issue 10, DESIGN.md
"The conversation core"), parsed from the XML the fake WeChat builds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.channels.wechat import store
from bot.channels.wechat.adapter import render, to_event
from bot.channels.wechat.endpoint import OutImage, OutText
from bot.channels.wechat.geo import wgs84_to_gcj02
from bot.channels.wechat.inbound import Inbound, InboundCodec
from bot.chat.events import (
    Choice,
    Command,
    Follow,
    Location,
    Person,
    Photo,
    Scan,
    Text,
    Unfollow,
)
from bot.chat.replies import AskLocation, ChoiceButton, Picture, Place, TextReply, Toast, rows
from bot.storage.db import BotDatabase
from tests.fake_wechat import FakeWeChat, sign, to_xml
from tests.wechat_harness import bot_database_url

FAKE = FakeWeChat()
CODEC = InboundCodec(FAKE.token, FAKE.app_id, None, clock=lambda: 1.0)  # signed at "1"
ME = Person("wechat", "o_me")


def parsed(fields: dict[str, Any]) -> Inbound:
    query = {"signature": sign(FAKE.token, "1", "n"), "timestamp": "1", "nonce": "n"}
    return CODEC.open(query, to_xml(fields).encode())


def event_of(fields: dict[str, Any], by_label: dict[str, str] | None = None) -> object:
    return to_event(parsed(fields), by_label or {})


def test_follow_scan_and_unfollow() -> None:
    assert event_of(FAKE.event("o_me", "subscribe")) == Follow(ME)
    assert event_of(FAKE.event("o_me", "subscribe", EventKey="qrscene_inv-7x")) == Scan(
        ME, "inv-7x", via="qr_scene"
    )
    assert event_of(FAKE.event("o_me", "SCAN", EventKey="inv-7x", Ticket="T")) == Scan(
        ME, "inv-7x", via="qr_scene"
    )
    assert event_of(FAKE.event("o_me", "unsubscribe")) == Unfollow(ME)


def test_the_menu_scanner_is_a_scan_and_a_click_a_command() -> None:
    scan = FAKE.event(
        "o_me",
        "scancode_waitmsg",
        EventKey="scan",
        ScanCodeInfo={"ScanType": "qrcode", "ScanResult": " 12345678901234567890 "},
    )
    assert event_of(scan) == Scan(ME, "12345678901234567890", via="scanner")
    assert event_of(FAKE.event("o_me", "CLICK", EventKey="balance")) == Command(ME, "balance")
    assert event_of(FAKE.event("o_me", "CLICK", EventKey="drop_tables")) is None
    assert event_of(FAKE.event("o_me", "VIEW", EventKey="https://example.com")) is None
    assert event_of(FAKE.event("o_me", "LOCATION", Latitude=30.2, Longitude=119.7)) is None


def test_texts_commands_and_menu_link_taps() -> None:
    assert event_of(FAKE.text("o_me", "/Today  x")) == Command(ME, "today", ("x",))
    assert event_of(FAKE.text("o_me", "  你好 ")) == Text(ME, "你好")
    by_label = {"确认": "confirm|9"}
    tap = FAKE.text("o_me", "确认", bizmsgmenuid="confirm|9")
    assert event_of(tap, by_label) == Choice(ME, "confirm|9", label="确认")
    assert event_of(FAKE.text("o_me", "确认"), by_label) == Choice(ME, "confirm|9", label="确认")


def test_positions_arrive_in_gcj02_and_become_wgs84() -> None:
    wgs = (30.2336, 119.7247)
    gcj = wgs84_to_gcj02(*wgs)
    loc = event_of(
        FAKE.message(
            "o_me", "location", Location_X=gcj[0], Location_Y=gcj[1], Scale=15, Label="临安\u202e区"
        )
    )
    assert isinstance(loc, Location)
    assert abs(loc.lat - wgs[0]) < 1e-6 and abs(loc.lon - wgs[1]) < 1e-6
    assert loc.label == "临安区"  # bidi control removed
    picked = event_of(
        FAKE.event(
            "o_me",
            "location_select",
            EventKey="nearby",
            SendLocationInfo={
                "Location_X": gcj[0],
                "Location_Y": gcj[1],
                "Scale": 15,
                "Label": "x",
                "Poiname": "店",
            },
        )
    )
    assert isinstance(picked, Location) and abs(picked.lat - wgs[0]) < 1e-6
    bad = FAKE.message("o_me", "location", Location_X="nan", Location_Y=1, Label="")
    assert event_of(bad) is None


def test_a_photo_is_fetched_only_when_asked() -> None:
    asked: list[str] = []

    def fetcher(media_id: str) -> Any:
        async def fetch() -> bytes:
            asked.append(media_id)
            return b"png"

        return fetch

    event = to_event(
        parsed(FAKE.message("o_me", "image", PicUrl="http://x", MediaId="M1")), {}, fetcher
    )
    assert isinstance(event, Photo) and asked == []


async def test_replies_render_as_pages_links_pictures_and_map_links() -> None:
    uploads: list[tuple[bytes, str]] = []

    async def upload(png: bytes, name: str) -> str:
        uploads.append((png, name))
        return "MEDIA-1"

    done = await render(
        [
            TextReply("余额：120 积分", rows([ChoiceButton("刷新", "bal|1")]), replaces=True),
            Picture(
                b"PNG",
                caption="核销码 1234 5678 9012 3456 7890，5 分钟内有效",
                choices=rows([ChoiceButton("新码", "qr|new")]),
            ),
            Place("绿色超市", "临安区钱王街 1 号", 30.2336, 119.7247),
            AskLocation("请发送你的位置"),
            Toast("已过期"),
            Toast("码已失效", alert=True),
        ],
        upload,
    )
    assert uploads == [(b"PNG", "picture.png")]
    texts = [o.text for o in done.outs if isinstance(o, OutText)]
    assert done.outs[1] == OutImage("MEDIA-1")
    assert texts[0] == (
        '余额：120 积分\n\n<a href="weixin://bizmsgmenu?msgmenucontent=刷新'
        '&msgmenuid=bal|1">刷新</a>'
    )
    assert texts[1].startswith("核销码 1234 5678 9012 3456 7890，5 分钟内有效\n\n<a href=")
    assert texts[2].startswith(
        '<a href="https://uri.amap.com/marker?position=119.724700,30.233600&name='
    )
    assert texts[2].endswith(">绿色超市</a>\n临安区钱王街 1 号")
    assert texts[3:] == ["请发送你的位置", "码已失效"]
    assert done.choices == {"新码": "qr|new"}


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BotDatabase]:
    async with bot_database_url(request.param, tmp_path) as url:
        database = BotDatabase(url)
        await database.upgrade()
        yield database
        await database.dispose()


async def test_the_choice_map_is_kept_per_chat_and_replaced(db: BotDatabase) -> None:
    await store.remember_choices(db, "o_me", {"确认": "confirm|9", "取消": "cancel"})
    await store.remember_choices(db, "o_you", {"确认": "confirm|10"})
    assert await store.choice_map(db, "o_me") == {"确认": "confirm|9", "取消": "cancel"}
    await store.remember_choices(db, "o_me", {"下一页": "page|2"})
    assert await store.choice_map(db, "o_me") == {"下一页": "page|2"}
    assert await store.choice_for_label(db, "o_you", "确认") == "confirm|10"
