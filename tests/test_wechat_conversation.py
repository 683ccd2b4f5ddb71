"""A conversation through the fake WeChat, the real endpoint and the WeChat adapter, with
scripted features on the core's events and replies (the real features need the core's chat
storage keyed by (channel, openid) first): a follow through a staff-invite QR code, a menu-link
tap that comes back without its id, the cashier's scanner, a photo fetched only when asked, a
picture answered as an image with its text after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bot.channels.wechat.api import WeChatApi
from bot.channels.wechat.conversation import WeChatConversation
from bot.channels.wechat.endpoint import Handler
from bot.chat.events import Choice, Event, Follow, Photo, Scan, Text
from bot.chat.replies import ChoiceButton, Picture, Reply, TextReply, rows
from bot.storage.db import BotDatabase
from tests.wechat_harness import WeChatRig, bot_database_url, wechat_rig

CUSTOM = "/cgi-bin/message/custom/send"


class Features:
    """Stands in for the core's router: records events, answers in core replies."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.photos: list[bytes] = []

    async def __call__(self, event: Event) -> Sequence[Reply]:
        self.events.append(event)
        if isinstance(event, Follow):
            return [TextReply("欢迎", rows([ChoiceButton("查余额", "bal|1")]))]
        if isinstance(event, Scan) and event.via == "qr_scene":
            return [
                TextReply(
                    f"店员邀请 {event.payload}",
                    rows([ChoiceButton("接受", "staff|yes"), ChoiceButton("拒绝", "staff|no")]),
                )
            ]
        if isinstance(event, Scan):
            return [TextReply(f"账单金额？（码 {event.payload}）")]
        if isinstance(event, Choice):
            return [TextReply(f"选择 {event.data}")]
        if isinstance(event, Photo):
            self.photos.append(await event.fetch())
            return [Picture(b"\x89PNG-qr", alt_text="核销码 1234 5678 9012 3456 7890")]
        if isinstance(event, Text):
            return [TextReply(f"文字 {event.text}")]
        return []


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def talk(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[WeChatRig, Features]]:
    features = Features()

    def handler(api: WeChatApi, db: BotDatabase) -> Handler:
        return WeChatConversation(api, db, features)

    async with (
        bot_database_url(request.param, tmp_path) as url,
        wechat_rig(url, handler=handler) as rig,
    ):
        yield rig, features


async def test_an_invite_follow_then_a_tap_without_its_id(
    talk: tuple[WeChatRig, Features],
) -> None:
    rig, features = talk
    fake = rig.fake
    invite = await fake.push(fake.event("o_new", "subscribe", EventKey="qrscene_staff-7f3a"))
    assert invite.text.startswith("店员邀请 staff-7f3a\n\n")
    assert '<a href="weixin://bizmsgmenu?msgmenucontent=接受&msgmenuid=staff|yes">接受</a>' in (
        invite.text
    )
    tapped = await fake.push(fake.text("o_new", "接受"))  # the client dropped bizmsgmenuid
    assert tapped.text == "选择 staff|yes"
    typed = await fake.push(fake.text("o_new", "接受 吗"))
    assert typed.text == "文字 接受 吗"
    assert [type(e).__name__ for e in features.events] == ["Scan", "Choice", "Text"]


async def test_the_cashier_scans_and_a_photo_is_fetched_then_answered_with_a_picture(
    talk: tuple[WeChatRig, Features],
) -> None:
    rig, features = talk
    fake = rig.fake
    scan = await fake.push(
        fake.event(
            "o_till",
            "scancode_waitmsg",
            EventKey="scan",
            ScanCodeInfo={"ScanType": "qrcode", "ScanResult": "12345678901234567890"},
        )
    )
    assert scan.text == "账单金额？（码 12345678901234567890）"
    fake.media["PHOTO-1"] = b"jpeg bytes of a screen"
    photo = await fake.push(
        fake.message("o_till", "image", PicUrl="http://x/p.jpg", MediaId="PHOTO-1")
    )
    assert features.photos == [b"jpeg bytes of a screen"]
    assert photo.reply is not None and photo.reply["MsgType"] == "image"
    assert fake.media[photo.reply["Image.MediaId"]] == b"\x89PNG-qr"
    await fake.wait_for(lambda: bool(fake.calls_to(CUSTOM)))
    assert fake.calls_to(CUSTOM)[0].body["text"]["content"] == "核销码 1234 5678 9012 3456 7890"
