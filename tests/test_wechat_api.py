"""Our WeChat API client and what it sends, against the fake: the shared token (rule 4),
service windows (rule 2), template notices and their quota (rule 3), mass sends (rule 5),
media (rule 10), menus by tag (rule 8), parametric QR codes (rule 9)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import update

from bot.channels.wechat import store
from bot.channels.wechat.api import WeChatApi, WeChatApiError, template_field
from bot.channels.wechat.endpoint import OutImage, OutText
from bot.channels.wechat.outbound import (
    AnnounceOutcome,
    CustomerService,
    NoticeOutcome,
    announce,
    next_beijing_midnight,
    send_notice,
)
from bot.outbox.mass_sends import mass_sends_left
from bot.storage.schema import WeChatWindow
from tests.wechat_harness import WeChatRig, bot_database_url, wechat_rig

DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"


@pytest.fixture(params=DATABASES)
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WeChatRig]:
    async with bot_database_url(request.param, tmp_path) as url, wechat_rig(url) as rig:
        yield rig


async def test_processes_share_one_token_from_stable_token(rig: WeChatRig) -> None:
    other = WeChatApi(
        rig.session,
        rig.db,
        app_id=rig.fake.app_id,
        app_secret=rig.fake.app_secret,
        base_url=rig.fake.api_url,
    )
    await rig.fake.push(rig.fake.text("o_a", "hi"))
    await rig.api.send_text("o_a", "one")
    await other.send_text("o_a", "two")
    assert len(rig.fake.calls_to("/cgi-bin/stable_token")) == 1
    assert rig.fake.calls_to("/cgi-bin/stable_token")[0].body["force_refresh"] is False
    assert len(rig.fake.calls_to(CUSTOM)) == 2


@pytest.mark.parametrize("how", ["expire", "rotate"])
async def test_an_expired_or_rotated_token_is_recovered_without_force_refresh(
    rig: WeChatRig, how: str
) -> None:
    await rig.fake.push(rig.fake.text("o_b", "hi"))
    await rig.api.send_text("o_b", "before")
    if how == "expire":
        rig.fake.expire_token()  # next use: 42001
    else:
        rig.fake.rotate_token()  # someone force-refreshed: 40001
    await rig.api.send_text("o_b", "after")
    refused = rig.fake.calls_to(CUSTOM, errcode=42001 if how == "expire" else 40001)
    assert len(refused) == 1
    assert [c.body["text"]["content"] for c in rig.fake.calls_to(CUSTOM)] == ["before", "after"]
    assert rig.fake.forced_refreshes == 0
    cached = await store.read_token(rig.db, rig.fake.app_id)
    assert cached is not None and cached.value == rig.fake.current_token


async def test_a_token_another_process_refreshed_is_read_from_the_cache(rig: WeChatRig) -> None:
    other = WeChatApi(
        rig.session,
        rig.db,
        app_id=rig.fake.app_id,
        app_secret=rig.fake.app_secret,
        base_url=rig.fake.api_url,
    )
    await rig.fake.push(rig.fake.text("o_c", "hi"))
    await rig.api.send_text("o_c", "1")
    rig.fake.expire_token()
    await other.send_text("o_c", "2")  # refreshes the shared cache
    await rig.api.send_text("o_c", "3")  # reads it: no second stable_token call
    assert rig.api.token_fetches == 1 and other.token_fetches == 1


async def test_service_messages_stay_within_the_48_hour_window_count(rig: WeChatRig) -> None:
    service = CustomerService(rig.api, rig.db)
    await rig.fake.push(rig.fake.text("o_d", "hi"))
    sent = await service.send("o_d", [OutText(f"m{i}") for i in range(7)])
    assert sent == 5
    assert len(rig.fake.calls_to(CUSTOM)) == 5
    assert not rig.fake.calls_to(CUSTOM, errcode=45047)  # never reached, by counting


async def test_a_click_opens_three_sends_for_one_minute(rig: WeChatRig) -> None:
    service = CustomerService(rig.api, rig.db)
    await rig.fake.push(rig.fake.event("o_e", "CLICK", EventKey="balance"))
    assert await service.send("o_e", [OutText(f"m{i}") for i in range(4)]) == 3
    await rig.fake.push(rig.fake.event("o_e", "CLICK", EventKey="help"))
    # A minute later the window is closed on both sides.
    rig.fake.advance(61)
    async with rig.db.session() as session:
        await session.execute(
            update(WeChatWindow)
            .where(WeChatWindow.openid == "o_e")
            .values(event_at=WeChatWindow.event_at - dt.timedelta(seconds=61))
        )
    assert await service.send("o_e", [OutText("late")]) == 0
    assert len(rig.fake.calls_to(CUSTOM)) == 3
    assert not rig.fake.calls_to(CUSTOM, errcode=None)[3:]


async def test_after_48_hours_nothing_is_sent(rig: WeChatRig) -> None:
    service = CustomerService(rig.api, rig.db)
    await rig.fake.push(rig.fake.text("o_f", "hi"))
    async with rig.db.session() as session:
        await session.execute(
            update(WeChatWindow)
            .where(WeChatWindow.openid == "o_f")
            .values(message_at=WeChatWindow.message_at - dt.timedelta(hours=48, seconds=1))
        )
    rig.fake.advance(48 * 3600 + 1)
    assert await service.send("o_f", [OutText("too late")]) == 0
    assert not rig.fake.calls_to(CUSTOM, errcode=None)


async def test_when_the_platform_says_45015_the_windows_close(rig: WeChatRig) -> None:
    service = CustomerService(rig.api, rig.db)
    await rig.fake.push(rig.fake.text("o_g", "hi"))
    rig.fake.person("o_g").following = False  # we missed the unfollow event
    assert await service.send("o_g", [OutText("a"), OutText("b")]) == 0
    assert len(rig.fake.calls_to(CUSTOM, errcode=45015)) == 1
    assert await service.send("o_g", [OutText("c")]) == 0
    assert len(rig.fake.calls_to(CUSTOM, errcode=None)) == 1  # not tried again


async def test_notices_are_template_messages_with_clean_fields(rig: WeChatRig) -> None:
    service = CustomerService(rig.api, rig.db)
    fields = {"shop": template_field("绿色超市（临安店）\n二楼 🌿"), "points": "120"}
    result = await send_notice(
        rig.api, service, "o_h", "TPL-points", fields, fallback_text="x", urgent=False
    )
    assert result.outcome is NoticeOutcome.TEMPLATE
    sent = rig.fake.calls_to(TEMPLATE)
    assert sent[0].body["data"] == {
        "shop": {"value": "绿色超市（临安店） 二楼"},
        "points": {"value": "120"},
    }
    with pytest.raises(ValueError):
        await rig.api.send_template("o_h", "TPL-points", {"shop": "a\nb"})
    # The fake enforces the rule too: a raw call with a bad field is refused.
    with pytest.raises(WeChatApiError) as refused:
        await rig.api.call(
            TEMPLATE,
            json_body={"touser": "o_h", "template_id": "T", "data": {"shop": {"value": "x" * 21}}},
        )
    assert refused.value.errcode == 47003


async def test_over_the_template_quota_a_receipt_falls_back_and_a_digest_waits(
    rig: WeChatRig,
) -> None:
    service = CustomerService(rig.api, rig.db)
    rig.fake.template_quota = 0
    await rig.fake.push(rig.fake.text("o_i", "confirm"))  # opens a window
    receipt = await send_notice(
        rig.api,
        service,
        "o_i",
        "TPL-receipt",
        {"amount": "¥10.00"},
        fallback_text="收据：¥10.00",
        urgent=True,
    )
    assert receipt.outcome is NoticeOutcome.SERVICE
    assert rig.fake.calls_to(CUSTOM)[-1].body["text"]["content"] == "收据：¥10.00"
    digest = await send_notice(
        rig.api, service, "o_j", "TPL-vouchers", {"amount": "¥1.00"}, fallback_text="x", urgent=True
    )  # o_j opened no window
    assert digest.outcome is NoticeOutcome.DEFERRED
    assert digest.retry_at is not None
    assert digest.retry_at == next_beijing_midnight(digest.retry_at - dt.timedelta(hours=1))
    assert len(rig.fake.calls_to(TEMPLATE, errcode=45009)) == 2


async def test_announcements_are_mass_sends_four_a_month_and_idempotent(
    rig: WeChatRig,
) -> None:
    assert await mass_sends_left(rig.db) == 4
    first = await announce(rig.api, rig.db, "本周绿色消费日", "broadcast-1")
    again = await announce(rig.api, rig.db, "本周绿色消费日", "broadcast-1")
    assert (first.outcome, again.outcome) == (AnnounceOutcome.SENT, AnnounceOutcome.ALREADY)
    assert len(rig.fake.calls_to("/cgi-bin/message/mass/sendall")) == 1
    body = rig.fake.calls_to("/cgi-bin/message/mass/sendall")[0].body
    assert body["clientmsgid"] == "broadcast-1" and body["filter"] == {"is_to_all": True}
    for n in (2, 3, 4):
        assert (await announce(rig.api, rig.db, "t", f"broadcast-{n}")).outcome is (
            AnnounceOutcome.SENT
        )
    assert await mass_sends_left(rig.db) == 0
    fifth = await announce(rig.api, rig.db, "t", "broadcast-5")
    assert fifth.outcome is AnnounceOutcome.MONTH_USED
    assert len(rig.fake.calls_to("/cgi-bin/message/mass/sendall", errcode=None)) == 4


async def test_no_mass_send_quota_is_reported(rig: WeChatRig) -> None:
    rig.fake.mass_quota = 0
    result = await announce(rig.api, rig.db, "t", "broadcast-x")
    assert result.outcome is AnnounceOutcome.NO_QUOTA
    assert rig.fake.calls_to("/cgi-bin/message/mass/sendall", errcode=45028)


async def test_a_picture_is_uploaded_under_an_ascii_name_then_sent(rig: WeChatRig) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    media_id = await rig.api.upload_image(png, "qr-code.png")
    assert rig.fake.media[media_id] == png
    with pytest.raises(ValueError):
        await rig.api.upload_image(png, "二维码.png")
    await rig.fake.push(rig.fake.text("o_k", "/qr"))
    assert await CustomerService(rig.api, rig.db).send("o_k", [OutImage(media_id)]) == 1
    assert rig.fake.calls_to(CUSTOM)[0].body["image"] == {"media_id": media_id}


async def test_menus_by_tag_and_staff_invites_as_parametric_qr(rig: WeChatRig) -> None:
    tag = await rig.api.create_tag("cashier-zh_Hans")
    await rig.api.tag_people(tag, ["o_l"])
    buttons = [
        {"type": "scancode_waitmsg", "name": "扫码核销", "key": "scan"},
        {"type": "location_select", "name": "附近商家", "key": "nearby"},
    ]
    await rig.api.add_conditional_menu(buttons, tag)
    assert rig.fake.menus[0]["matchrule"] == {"tag_id": str(tag)}
    assert rig.fake.tagged[tag] == {"o_l"}
    ticket, url = await rig.api.create_qr("staff-abc123", expire_seconds=7 * 86400)
    assert ticket and url.endswith("staff-abc123")
    qr = rig.fake.calls_to("/cgi-bin/qrcode/create")[0].body
    assert qr["action_name"] == "QR_STR_SCENE" and qr["expire_seconds"] == 7 * 86400
    with pytest.raises(ValueError):
        await rig.api.create_qr("x" * 65)


async def test_a_network_failure_is_an_error_not_a_hang(tmp_path: Path) -> None:
    async with bot_database_url("sqlite", tmp_path) as url, wechat_rig(url) as rig:
        broken = WeChatApi(
            rig.session, rig.db, app_id="wx", app_secret="s", base_url="http://127.0.0.1:9"
        )
        with pytest.raises(aiohttp.ClientError):
            await broken.send_text("o", "x")
