"""An owner on WeChat (issue 11), through the fake WeChat server (SQLite, PostgreSQL): /statement
answers with the figures and, since a WeChat chat carries no files, the CSV as text; an undone
redemption reaches the customer as its own template notice."""

from __future__ import annotations

import uuid

from bot.channels.wechat.channel import WeChatChannel
from bot.channels.wechat.notice_sender import WeChatNoticeSender
from bot.chat.i18n import translator
from bot.outbox.notices import notice_text
from tests.ledger_support import pay_with_code
from tests.test_wechat_features import TEMPLATE, TEMPLATES, World, ledger_as
from tests.test_wechat_features import world as world  # the fixture, for this module

UNDONE = "TPL-voucher.redemption_undone"


async def test_statement_as_text_and_the_undo_notice(world: World) -> None:
    fake = world.rig.fake
    made = await ledger_as(world, "admin").create_staff_invite(world.shop_id, role="owner")
    joined = await fake.push(fake.event("o_boss", "subscribe", EventKey=f"qrscene_{made.code}"))
    assert "锦城绿色生活超市" in joined.text, joined.text
    await fake.push(fake.event("o_zoe", "subscribe"))
    zoe = await world.services.chats.get(("wechat", "o_zoe"))
    assert zoe is not None and zoe.member_id is not None
    shop = ledger_as(world, "merchant", world.shop_id)
    await shop.record_purchase(world.shop_id, zoe.member_id, 5_000_000, uuid.uuid4().hex)
    await ledger_as(world, "admin").release()
    paid = await pay_with_code(world.ledger, world.shop_id, zoe.member_id, 10_000,
                               "wechat-owner-1")
    undone = await shop.undo_redemption(paid.redemption_id, world.shop_id)
    assert undone.vouchers_returned_fen == 2_000

    stated = await fake.push(fake.text("o_boss", "/statement"))
    await world.rig.endpoint.drain()  # the pages after the passive reply go as service messages
    sent = [stated.text] + [
        c.body.get("text", {}).get("content", "")
        for c in fake.calls_to("/cgi-bin/message/custom/send")
        if c.body.get("touser") == "o_boss"
    ]
    said = "\n".join(sent)
    assert "锦城绿色生活超市对账单" in said, said
    assert "撤销核销 1 笔" in said and "应付让利" in said
    assert "date,kind,count,amount_yuan" in said  # the CSV's text, where no file can go

    await world.reader.catch_up()
    wechat = WeChatChannel(
        world.rig.api, world.rig.db, {**TEMPLATES, "voucher.redemption_undone": UNDONE},
        lambda notice, locale: notice_text(notice, translator(locale)) or "",
    )
    sender = WeChatNoticeSender(world.rig.db, world.services.chats, wechat)
    assert await sender.drain_once() >= 1
    told = [c.body for c in fake.calls_to(TEMPLATE) if c.body["template_id"] == UNDONE]
    assert len(told) == 1 and told[0]["touser"] == "o_zoe"
    assert told[0]["data"] == {"thing1": {"value": "锦城绿色生活超市"},
                               "amount2": {"value": "¥20.00"}}
