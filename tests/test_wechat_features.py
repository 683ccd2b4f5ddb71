"""The real features behind the WeChat endpoint (issue 10), through the fake WeChat server, the
real endpoint, adapter and renderer, the core's router and a real ledger: what a WeChat user
gets is the same conversation the Telegram tests hold, rendered WeChat's way."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from bot.channels.wechat.channel import WeChatChannel
from bot.channels.wechat.geo import wgs84_to_gcj02
from bot.channels.wechat.menus import setup_menus
from bot.channels.wechat.notice_sender import WeChatNoticeSender
from bot.channels.wechat.tagging import TAG_PREFIX, role_of
from bot.chat.i18n import translator
from bot.outbox.event_reader import EventReader
from bot.outbox.notices import notice_text
from bot.services import Services
from bot.storage import cursors
from ledger.principal import Principal
from ledger.service import LedgerService
from ledger_client.inprocess import InProcessLedgerClient
from tests.bot_harness import SHOP
from tests.databases import fresh_database
from tests.fake_wechat import Delivery
from tests.wechat_harness import WeChatRig, bot_database_url, features_rig

TEMPLATE = "/cgi-bin/message/template/send"
TEMPLATES = {
    kind: f"TPL-{kind}"
    for kind in ("points.earned", "voucher.granted", "voucher.expiring", "voucher.redeemed",
                 "redemption.receipt")
}

QR = zxingcpp.BarcodeFormat.QRCode  # the redemption picture also carries a Code 128


@dataclass
class World:
    rig: WeChatRig
    services: Services
    ledger: LedgerService
    shop_id: int
    reader: EventReader


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    kind = request.param
    async with (
        fresh_database(kind, tmp_path) as ledger_url,
        bot_database_url(kind, tmp_path) as bot_url,
        features_rig(ledger_url, bot_url) as wx,
    ):
        reader = EventReader(wx.services)
        await reader.position()  # from here on every event is read
        yield World(wx.rig, wx.services, wx.ledger, wx.shop_id, reader)


def ledger_as(world: World, role: str, merchant_id: int | None = None) -> InProcessLedgerClient:
    return InProcessLedgerClient(world.ledger, Principal(role, merchant_id))  # type: ignore[arg-type]


def choice(delivery: Delivery, label: str) -> str:
    """The menu-link id of the choice labelled ``label`` in a passive reply."""
    found = re.findall(r'msgmenucontent=([^&]*)&msgmenuid=([^"]*)"', delivery.text)
    ids = [data for text, data in found if label in text]
    assert ids, f"no {label!r} choice in {delivery.text!r}"
    return ids[0]


async def test_follow_balance_nearby_code_then_the_cashier_redeems_once(world: World) -> None:
    fake = world.rig.fake
    hello = await fake.push(fake.event("o_zoe", "subscribe"))
    assert hello.text.startswith("欢迎使用绿色消费积分！\n"), hello.text
    profile = await world.services.chats.get(("wechat", "o_zoe"))
    assert profile is not None and profile.member_id is not None
    member_id = profile.member_id
    shop = ledger_as(world, "merchant", world.shop_id)
    await shop.record_purchase(world.shop_id, member_id, 5_000_000, uuid.uuid4().hex)
    await ledger_as(world, "admin").release()
    vouchers = (await ledger_as(world, "admin").balance(member_id)).vouchers_fen

    balance = await fake.push(fake.text("o_zoe", "/balance"))
    assert balance.text.startswith("💚 您的绿色消费积分\n积分："), balance.text

    lat, lon = wgs84_to_gcj02(SHOP["lat"], SHOP["lon"])  # what WeChat reports in China
    near = await fake.push(
        fake.message("o_zoe", "location", Location_X=lat, Location_Y=lon, Scale=15, Label="钱王街")
    )
    assert "锦城绿色生活超市 · 超市 · 0米" in near.text, near.text
    assert len(near.text.encode()) <= 2048

    code = await fake.push(fake.text("o_zoe", "/qr"))
    assert code.reply is not None and code.reply["MsgType"] == "image"
    decoded = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(fake.media[code.reply["Image.MediaId"]])), formats=QR
    )
    assert len(decoded) == 1
    payload = decoded[0].text

    invite = await ledger_as(world, "admin").create_staff_invite(world.shop_id)
    joined = await fake.push(
        fake.event("o_till", "subscribe", EventKey=f"qrscene_{invite.code}")
    )
    assert "锦城绿色生活超市" in joined.text, joined.text

    scanned = await fake.push(
        fake.event(
            "o_till",
            "scancode_waitmsg",
            EventKey="scan",
            ScanCodeInfo={"ScanType": "qrcode", "ScanResult": payload},
        )
    )
    assert "金额" in scanned.text, scanned.text
    preview = await fake.push(fake.text("o_till", "88.50"))
    confirm = choice(preview, "确认")
    tap = fake.text("o_till", "确认", bizmsgmenuid=confirm)
    done = await fake.push(tap, always_retry=True)  # three identical deliveries
    assert len(done.tries) == 3
    assert done.text.startswith("✅ 已在锦城绿色生活超市核销\n"), done.text
    assert "抵扣抵用券：¥17.70" in done.text  # the shop's cap: 20 % of ¥88.50
    after = await ledger_as(world, "admin").balance(member_id)
    assert vouchers - after.vouchers_fen == 1_770
    today = await shop.today(world.shop_id)
    assert (today.count, today.bill_fen, today.vouchers_fen) == (1, 8_850, 1_770)

    # The ledger's events become neutral notices in the outbox, sent by WeChat's own sender as
    # template messages with structured fields.
    await world.reader.catch_up()
    wechat = WeChatChannel(
        world.rig.api, world.rig.db, TEMPLATES,
        lambda notice, locale: notice_text(notice, translator(locale)) or "",
    )
    sender = WeChatNoticeSender(world.rig.db, world.services.chats, wechat)
    assert await sender.drain_once() >= 1
    sends = fake.calls_to(TEMPLATE)
    receipts = [c.body for c in sends if c.body["template_id"] == TEMPLATES["voucher.redeemed"]]
    assert len(receipts) == 1
    assert receipts[0]["touser"] == "o_zoe"
    assert receipts[0]["data"] == {"thing1": {"value": "锦城绿色生活超市"},
                                   "amount2": {"value": "¥17.70"}}
    earned = [c.body for c in sends if c.body["template_id"] == TEMPLATES["points.earned"]]
    assert earned[0]["data"]["amount3"] == {"value": "¥50000.00"}  # the purchase recorded above
    assert await sender.drain_once() == 0  # nothing twice


async def test_menu_tags_follow_role_and_language(world: World) -> None:
    """WeChat shows a conditional menu per tag (role x language): the bot retags a follower as
    they become a cashier, choose a language and lose the staff link, through the tag API, and
    asks nothing when the tag is already right."""
    fake, rig = world.rig.fake, world.rig
    tags = await setup_menus(rig.api)  # what greenpoints wechat setup-menus stores
    async with rig.db.session() as session:
        for name, tag_id in tags.items():
            await cursors.start(session, TAG_PREFIX + name, tag_id)
    tagging = "/cgi-bin/tags/members/batchtagging"
    untagging = "/cgi-bin/tags/members/batchuntagging"

    await fake.push(fake.event("o_cara", "subscribe"))
    assert fake.tags_of("o_cara") == ["gp-consumer-zh_Hans"]
    await fake.push(fake.text("o_cara", "/start"))  # the same role and language: no call
    assert len(fake.calls_to(tagging)) == 1 and fake.calls_to(untagging) == []

    invite = await ledger_as(world, "admin").create_staff_invite(world.shop_id)
    joined = await fake.push(fake.event("o_cara", "SCAN", EventKey=invite.code))
    assert "锦城绿色生活超市" in joined.text, joined.text
    assert fake.tags_of("o_cara") == ["gp-cashier-zh_Hans"]
    assert fake.calls_to(untagging)[-1].body == {
        "openid_list": ["o_cara"], "tagid": tags["gp-consumer-zh_Hans"]
    }

    menu = await fake.push(fake.text("o_cara", "/language"))
    english = choice(menu, "English")
    await fake.push(fake.text("o_cara", "English", bizmsgmenuid=english))
    assert fake.tags_of("o_cara") == ["gp-cashier-en"]

    await ledger_as(world, "admin").revoke_staff(world.shop_id, "wechat", "o_cara")
    refused = await fake.push(fake.text("o_cara", "/today"))
    assert refused.text.startswith("/today is for the staff"), refused.text
    assert fake.tags_of("o_cara") == ["gp-consumer-en"]
    assert len(fake.calls_to(tagging)) == 4 and len(fake.calls_to(untagging)) == 3
    assert [role_of(staff=s, admin=a) for s, a in [(False, False), (True, False), (True, True)]
            ] == ["consumer", "cashier", "admin"]


async def test_an_admin_on_wechat_is_named_by_openid(world: World) -> None:
    """Admins work from WeChat too (issue 10): GREENPOINTS_WECHAT_ADMIN_OPENIDS names them by
    openid; a follower not named is refused, and a Telegram id does not make an openid an admin."""
    fake = world.rig.fake
    world.services.settings = world.services.settings.model_copy(
        update={"wechat_admin_openids": frozenset({"o_ada"}), "admin_ids": frozenset({10001})}
    )
    await fake.push(fake.event("o_ada", "subscribe"))
    figures = await fake.push(fake.text("o_ada", "/stats"))
    assert figures.text.startswith("联盟数据"), figures.text
    composing = await fake.push(fake.text("o_ada", "/broadcast"))
    assert "公告" in composing.text, composing.text
    for someone in ("o_bob", "10001"):
        await fake.push(fake.event(someone, "subscribe"))
        refused = await fake.push(fake.text(someone, "/stats"))
        assert refused.text == "抱歉，这仅供联盟管理员使用。", refused.text
