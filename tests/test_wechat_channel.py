"""The WeChat channel behind the core's Channel protocol, through the fake WeChat: replies
sent unasked only inside windows, notices as template messages with their quota fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.channels.wechat import store
from bot.channels.wechat.channel import NoticeDeferred, WeChatChannel
from bot.chat.channel import ChannelError, PersonGone
from bot.chat.events import Person
from bot.chat.replies import ChoiceButton, Notice, Picture, TextReply, rows
from tests.wechat_harness import WeChatRig, bot_database_url, wechat_rig

CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"


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

    return WeChatChannel(
        rig.api, rig.db, {"redemption.receipt": "TPL-r", "voucher.granted": "TPL-v"}, notice_text
    )


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
