"""The WeChat channel behind the core's Channel protocol, through the fake WeChat: replies
sent unasked only inside windows, notices as template messages with their quota fallback; the
WeChat notice sender (issue 10, DESIGN.md "Notices"): the day's template quota used up (45009)
falls back per the notice policy, an unfollow blocks the chat, and the sender wakes on new rows
instead of polling (a slow safety poll remains)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.channels.wechat import store
from bot.channels.wechat.channel import NoticeDeferred, WeChatChannel
from bot.channels.wechat.notice_sender import WeChatNoticeSender, WeChatSenderTuning
from bot.channels.wechat.outbound import next_beijing_midnight
from bot.chat.channel import ChannelError, PersonGone
from bot.chat.events import Person
from bot.chat.replies import ChoiceButton, Notice, Picture, TextReply, rows
from bot.outbox.event_reader import NOTICE_METHOD
from bot.storage import outbox
from bot.storage.chats import ChatStore, utcnow
from bot.storage.schema import OutboxMessage
from tests.wechat_harness import WeChatRig, bot_database_url, wechat_rig

CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"
TEMPLATES = {"redemption.receipt": "TPL-r", "voucher.granted": "TPL-v"}
RECEIPT = {"merchant": "绿色超市", "amount_fen": 1000}


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WeChatRig]:
    async with bot_database_url(request.param, tmp_path) as url, wechat_rig(url) as rig:
        yield rig


def channel_for(rig: WeChatRig) -> WeChatChannel:
    def notice_text(notice: Notice, locale: str) -> str:
        return f"[{locale}] {notice.kind}"  # stands in for the core's localized notice text

    return WeChatChannel(rig.api, rig.db, TEMPLATES, notice_text)


async def test_send_renders_and_remembers_the_choices(rig: WeChatRig) -> None:
    channel = channel_for(rig)
    await rig.fake.push(rig.fake.text("o_a", "/qr"))
    await channel.send(
        Person("wechat", "o_a"),
        [
            Picture(
                b"\x89PNG-fake",
                alt_text="核销码 1234 5678 9012 3456 7890",
                choices=rows([ChoiceButton("新码", "qr|new")]),
            ),
        ],
    )
    sent = rig.fake.calls_to(CUSTOM)
    assert [c.body["msgtype"] for c in sent] == ["image", "text"]
    assert rig.fake.media[sent[0].body["image"]["media_id"]] == b"\x89PNG-fake"
    assert "msgmenuid=qr|new" in sent[1].body["text"]["content"]
    assert await store.choice_map(rig.db, "o_a") == {"新码": "qr|new"}


async def test_send_outside_any_window_sends_nothing_and_says_so(rig: WeChatRig) -> None:
    channel = channel_for(rig)
    with pytest.raises(ChannelError):
        await channel.send(Person("wechat", "o_b"), [TextReply("hello")])
    await rig.fake.push(rig.fake.event("o_b", "unsubscribe"))
    with pytest.raises(PersonGone):
        await channel.send(Person("wechat", "o_b"), [TextReply("hello")])
    assert not rig.fake.calls_to(CUSTOM, errcode=None)


async def test_notify_sends_a_template_and_falls_back_over_quota(rig: WeChatRig) -> None:
    channel = channel_for(rig)
    receipt = Notice("redemption.receipt", {"merchant": "绿色超市", "amount_fen": 1000})
    await channel.notify(Person("wechat", "o_c"), receipt, "zh_Hans")
    assert rig.fake.calls_to(TEMPLATE)[0].body["data"] == {
        "thing1": {"value": "绿色超市"},
        "amount2": {"value": "¥10.00"},
    }
    rig.fake.template_quota = 0
    await rig.fake.push(rig.fake.text("o_c", "confirm"))
    await channel.notify(Person("wechat", "o_c"), receipt, "zh_Hans")
    assert rig.fake.calls_to(CUSTOM)[-1].body["text"]["content"] == "[zh_Hans] redemption.receipt"
    with pytest.raises(NoticeDeferred):
        await channel.notify(
            Person("wechat", "o_c"), Notice("voucher.granted", {"amount_fen": 5}), "zh_Hans"
        )
    with pytest.raises(ChannelError, match="no WeChat template"):
        await channel.notify(Person("wechat", "o_c"), Notice("points.earned", {}), "en")


async def test_menus_are_one_conditional_menu_per_role_and_language(rig: WeChatRig) -> None:
    from bot.channels.wechat.menus import setup_menus

    tags = await setup_menus(rig.api)
    assert len(tags) == 9 and len(rig.fake.menus) == 9
    cashier_zh = next(
        m for m in rig.fake.menus if m["matchrule"] == {"tag_id": str(tags["gp-cashier-zh_Hans"])}
    )
    assert cashier_zh["button"][0] == {
        "type": "scancode_waitmsg",
        "name": "扫码核销",
        "key": "scan",
    }
    more = cashier_zh["button"][-1]["sub_button"]
    assert {"type": "location_select", "name": "附近商家", "key": "nearby"} in more
    consumer_en = next(
        m for m in rig.fake.menus if m["matchrule"] == {"tag_id": str(tags["gp-consumer-en"])}
    )
    assert [b["name"] for b in consumer_en["button"]] == ["Balance", "My code", "More"]
    for menu in rig.fake.menus:  # the platform's limits: 3 top buttons x 5, 16 / 60 bytes
        assert len(menu["button"]) <= 3
        for button in menu["button"]:
            assert len(button["name"].encode()) <= 16
            assert len(button.get("sub_button", [])) <= 5
    again = await setup_menus(rig.api, tags)  # re-run: no new tags
    assert again == tags and len(rig.fake.tags) == 9


async def test_setup_menus_command_keeps_tag_ids_and_reuses_them(
    rig: WeChatRig, tmp_path: Path
) -> None:
    from bot.channels.wechat.cli import run_setup_menus
    from bot.channels.wechat.settings import load_wechat_settings

    settings = load_wechat_settings(
        app_id=rig.fake.app_id,
        app_secret=rig.fake.app_secret,
        token=rig.fake.token,
        api_url=rig.fake.api_url,
    )
    url = f"sqlite:///{tmp_path / 'cli-bot.db'}"
    first = await run_setup_menus(settings, url)
    second = await run_setup_menus(settings, url)
    assert first == second and len(rig.fake.tags) == 9
    assert len(rig.fake.menus) == 18  # each run sets every menu again


def test_the_wechat_command_stops_on_a_missing_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("APP_ID", "APP_SECRET", "TOKEN", "AES_KEY"):
        monkeypatch.delenv(f"GREENPOINTS_WECHAT_{name}", raising=False)
    assert main(["wechat", "setup-menus"]) == 2
    err = capsys.readouterr().err
    assert err == "GREENPOINTS_WECHAT_APP_ID: is not set\n"

def sender_for(rig: WeChatRig, idle_poll: float = 3600.0) -> WeChatNoticeSender:
    return WeChatNoticeSender(
        rig.db, ChatStore(rig.db), channel_for(rig), tuning=WeChatSenderTuning(idle_poll=idle_poll)
    )


async def enqueue(rig: WeChatRig, openid: str, kind: str, fields: dict[str, object]) -> int:
    """A notice row for ``openid`` as the event reader writes it; the chat exists first."""
    if await ChatStore(rig.db).get(("wechat", openid)) is None:
        await ChatStore(rig.db).seen(("wechat", openid), "zh_Hans", None)
    async with rig.db.session() as session:
        await outbox.enqueue(
            session,
            [
                outbox.Outgoing(
                    "wechat", openid, NOTICE_METHOD, {"kind": kind, "fields": fields}, "notice"
                )
            ],
        )
        return int(await session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()))
                   or 0)


async def row(rig: WeChatRig, row_id: int) -> OutboxMessage:
    async with rig.db.session() as session:
        found = await session.get(OutboxMessage, row_id)
    assert found is not None
    return found


async def test_over_the_template_quota_a_receipt_falls_back_inside_a_window_and_the_rest_wait(
    rig: WeChatRig,
) -> None:
    fake = rig.fake
    fake.template_quota = 0
    await fake.push(fake.text("o_ann", "确认"))  # her message opened a 48-hour window
    receipt = await enqueue(rig, "o_ann", "redemption.receipt", RECEIPT)
    grant = await enqueue(rig, "o_ann", "voucher.granted", {"amount_fen": 500})
    quiet = await enqueue(rig, "o_bo", "redemption.receipt", RECEIPT)  # o_bo opened no window
    sender = sender_for(rig)
    assert await sender.drain_once() == 3
    assert len(fake.calls_to(TEMPLATE, errcode=45009)) == 3
    service = fake.calls_to(CUSTOM)
    assert [(c.body["touser"], c.body["text"]["content"]) for c in service] == [
        ("o_ann", "[zh_Hans] redemption.receipt")
    ]
    assert (await row(rig, receipt)).state == outbox.SENT
    midnight = next_beijing_midnight()
    for waiting in (grant, quiet):
        found = await row(rig, waiting)
        assert found.state == outbox.PENDING and found.not_before == midnight, found.last_error
        assert found.not_before > utcnow()
    assert (midnight + dt.timedelta(hours=8)).hour == 0  # the reset is midnight in Beijing
    assert await sender.drain_once() == 0  # not due before the quota resets
    assert len(fake.calls_to(TEMPLATE, errcode=None)) == 3


async def test_an_unfollowed_person_blocks_the_chat_and_is_not_tried_again(
    rig: WeChatRig,
) -> None:
    fake = rig.fake
    await fake.push(fake.event("o_cy", "subscribe"))
    fake.person("o_cy").following = False  # unfollowed, and the event never reached us
    first = await enqueue(rig, "o_cy", "redemption.receipt", RECEIPT)
    sender = sender_for(rig)
    assert await sender.drain_once() == 1
    assert [c.errcode for c in fake.calls_to(TEMPLATE, errcode=None)] == [43004]
    assert (await row(rig, first)).state == outbox.BLOCKED
    profile = await ChatStore(rig.db).get(("wechat", "o_cy"))
    assert profile is not None and profile.blocked
    second = await enqueue(rig, "o_cy", "voucher.granted", {"amount_fen": 500})
    assert await sender.drain_once() == 1
    assert (await row(rig, second)).state == outbox.BLOCKED
    assert len(fake.calls_to(TEMPLATE, errcode=None)) == 1  # the blocked chat was not tried


async def test_the_sender_wakes_on_new_rows_and_still_polls_slowly(rig: WeChatRig) -> None:
    fake = rig.fake
    sleepy = sender_for(rig, idle_poll=3600.0)  # only a wake can make it look again
    running = asyncio.create_task(sleepy.run())
    try:
        await enqueue(rig, "o_di", "voucher.granted", {"amount_fen": 500})
        sleepy.wake()
        await fake.wait_for(lambda: len(fake.calls_to(TEMPLATE)) == 1, within=10)
        await enqueue(rig, "o_di", "voucher.granted", {"amount_fen": 600})
        sleepy.wake()
        await fake.wait_for(lambda: len(fake.calls_to(TEMPLATE)) == 2, within=10)
    finally:
        sleepy.stop()
        await asyncio.wait_for(running, 10)
    polling = sender_for(rig, idle_poll=0.05)  # never woken: the safety poll finds the row
    running = asyncio.create_task(polling.run())
    try:
        await enqueue(rig, "o_di", "voucher.granted", {"amount_fen": 700})
        await fake.wait_for(lambda: len(fake.calls_to(TEMPLATE)) == 3, within=10)
    finally:
        polling.stop()
        await asyncio.wait_for(running, 10)
