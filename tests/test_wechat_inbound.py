"""The /wechat endpoint through a fake WeChat: signatures, safe mode, the deadline and retries.

Rules: shared/WECHAT.md 1 (5 s, 3 tries, composite dedupe in the shared database), 2 (windows),
6 (2,048 bytes), 12 (unfollow).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.channels.wechat import store
from bot.channels.wechat.endpoint import WeChatEndpoint
from bot.channels.wechat.inbound import FRESH_SECONDS, InboundCodec
from bot.storage.schema import WeChatDelivery
from tests.fake_wechat import sign, to_xml
from tests.wechat_harness import AES_KEY, WeChatRig, bot_database_url, serve_endpoint, wechat_rig

DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
MODES = [pytest.param(AES_KEY, id="safe"), pytest.param(None, id="plain")]


@pytest.fixture(params=DATABASES)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with bot_database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=MODES)
async def rig(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[WeChatRig]:
    async with wechat_rig(db_url, aes_key=request.param) as rig:
        yield rig


async def test_url_verification_echoes_only_with_a_valid_signature(rig: WeChatRig) -> None:
    query = {
        "signature": sign(rig.fake.token, "1700000000", "n1"),
        "timestamp": "1700000000",
        "nonce": "n1",
        "echostr": "4851267321",
    }
    async with rig.session.get(rig.url, params=query) as response:
        assert (response.status, await response.text()) == (200, "4851267321")
    async with rig.session.get(rig.url, params=query | {"signature": "0" * 40}) as response:
        assert response.status == 403


async def test_a_text_gets_a_passive_reply(rig: WeChatRig) -> None:
    delivery = await rig.fake.push(rig.fake.text("o_alice", "你好 ]]> there"))
    assert [t.status for t in delivery.tries] == [200]
    assert delivery.reply is not None and delivery.reply["MsgType"] == "text"
    assert delivery.text == "got: 你好 ]] > there"


async def test_events_are_parsed_by_kind(rig: WeChatRig) -> None:
    fake = rig.fake
    follow = await fake.push(fake.event("o_bob", "subscribe", EventKey="qrscene_staff-42"))
    assert follow.text == "welcome staff-42"
    scan = await fake.push(
        fake.event(
            "o_bob",
            "scancode_waitmsg",
            EventKey="scan",
            ScanCodeInfo={"ScanType": "qrcode", "ScanResult": "12345678901234567890"},
        )
    )
    assert scan.text == "scanned 12345678901234567890"
    where = await fake.push(
        fake.message(
            "o_bob", "location", Location_X=30.2336, Location_Y=119.7247, Scale=15, Label="临安"
        )
    )
    assert where.text == "at 30.2336,119.7247"


async def test_three_identical_deliveries_are_handled_once(rig: WeChatRig) -> None:
    fields = rig.fake.text("o_carol", "confirm")
    delivery = await rig.fake.push(fields, always_retry=True)
    assert [t.status for t in delivery.tries] == [200, 200, 200]
    assert list(rig.bot.handled.values()) == [1]
    # The last retry was answered with the first delivery's stored reply (in case the first
    # answer was lost on the way), not with "success" and not by running the handler again.
    assert delivery.text == "got: confirm"


async def test_the_composite_key_tells_apart_what_msgid_or_time_alone_would_not(
    rig: WeChatRig,
) -> None:
    fake = rig.fake
    first = fake.text("o_dan", "a")
    # Same MsgId from another person (MsgId alone collided: WxJava #333).
    other_person = fake.text("o_erin", "b") | {"MsgId": first["MsgId"]}
    # Two events of one person in the same second, different keys (time alone collided).
    click_1 = fake.event("o_dan", "CLICK", EventKey="balance", CreateTime=1700000000)
    click_2 = fake.event("o_dan", "CLICK", EventKey="help", CreateTime=1700000000)
    for fields in (first, other_person, click_1, click_2):
        await fake.push(fields)
    assert sorted(rig.bot.handled.values()) == [1, 1, 1, 1]


async def test_a_slow_reply_answers_success_in_time_and_follows_as_a_service_message(
    db_url: str,
) -> None:
    async with wechat_rig(db_url, deadline=0.2) as rig:
        rig.fake.deadline = 1.0
        delivery = await rig.fake.push(rig.fake.text("o_fay", "slow"))
        assert [(t.status, t.body) for t in delivery.tries] == [(200, "success")]
        assert delivery.tries[0].seconds < 1.0
        rig.bot.gate.set()
        await rig.fake.wait_for(lambda: bool(rig.fake.calls_to("/cgi-bin/message/custom/send")))
        sent = rig.fake.calls_to("/cgi-bin/message/custom/send")
        assert [c.body["text"]["content"] for c in sent] == ["slow answer"]
        assert sent[0].body["touser"] == "o_fay"


async def test_a_deadline_missed_by_the_bot_is_retried_and_still_handled_once(
    db_url: str,
) -> None:
    # The bot's own deadline is set beyond the platform's: WeChat gives up and retries.
    async with wechat_rig(db_url, deadline=30) as rig:
        rig.fake.deadline = 0.3
        delivery = await rig.fake.push(rig.fake.text("o_gus", "slow"))
        # The first try is still running: the retry is not handled again, it is told success
        # (WeChat takes that as answered), and the first one's reply follows as a service
        # message when it is done.
        assert [(t.status, t.body) for t in delivery.tries] == [(None, ""), (200, "success")]
        assert list(rig.bot.handled.values()) == [1]
        rig.bot.gate.set()
        await rig.fake.wait_for(lambda: bool(rig.fake.calls_to("/cgi-bin/message/custom/send")))


async def test_more_than_one_reply_goes_passive_first_then_service_messages(
    rig: WeChatRig,
) -> None:
    delivery = await rig.fake.push(rig.fake.text("o_hal", "three"))
    assert delivery.text == "one"
    await rig.fake.wait_for(lambda: len(rig.fake.calls_to("/cgi-bin/message/custom/send")) == 2)
    assert [
        c.body["text"]["content"] for c in rig.fake.calls_to("/cgi-bin/message/custom/send")
    ] == ["two", "three"]


async def test_long_replies_arrive_as_pages_within_2048_bytes(rig: WeChatRig) -> None:
    delivery = await rig.fake.push(rig.fake.text("o_ivy", "long"))
    await rig.endpoint.drain()
    pages = [delivery.text] + [
        c.body["text"]["content"] for c in rig.fake.calls_to("/cgi-bin/message/custom/send")
    ]
    # A line is 12 bytes + newline: 157 lines fit in 2,048 bytes, so 600 lines take 4 pages.
    assert len(pages) == 4 and all(len(p.encode()) <= 2048 for p in pages)
    assert "\n".join(pages) == ("积分说明\n" * 600).strip()


async def test_refusals_are_4xx_never_5xx(rig: WeChatRig) -> None:
    fake = rig.fake
    query, body = fake.signed(fake.text("o_jo", "hi"))

    async def post(params: dict[str, str], data: bytes) -> int:
        async with rig.session.post(rig.url, params=params, data=data) as response:
            return response.status

    assert await post(query | {"signature": "f" * 40}, body.encode()) == 403
    assert await post(query, b"x" * (64 * 1024 + 1)) == 413
    if fake.box is not None:
        assert await post(query | {"msg_signature": "f" * 40}, body.encode()) == 403
        garbage = to_xml({"ToUserName": "gh", "Encrypt": "bm90IGFlcw=="})
        assert (
            await post(
                query
                | {
                    "msg_signature": sign(
                        fake.token, query["timestamp"], query["nonce"], "bm90IGFlcw=="
                    )
                },
                garbage.encode(),
            )
            == 400
        )
        plain = {k: v for k, v in query.items() if k not in {"encrypt_type", "msg_signature"}}
        assert await post(plain, to_xml(fake.text("o_jo", "hi")).encode()) == 400
    else:
        assert await post(query, b"<xml><unclosed></xml>") == 400
        assert await post(query, b"<xml><FromUserName>o</FromUserName></xml>") == 400
        assert await post(query, b"") == 400
        too_long = to_xml(fake.text("o" * 65, "hi"))  # openids are 28 characters
        assert await post(query, too_long.encode()) == 400
        bomb = b'<!DOCTYPE x [<!ENTITY e "boom">]><xml><A>&e;</A></xml>'
        assert await post(query, bomb) == 400
    assert not rig.bot.handled


async def test_two_processes_sharing_the_database_handle_a_delivery_once(db_url: str) -> None:
    async with wechat_rig(db_url) as rig:
        other = WeChatEndpoint(
            InboundCodec(rig.fake.token, rig.fake.app_id, AES_KEY),
            rig.db,
            rig.bot,
            rig.endpoint.later,
        )
        async with serve_endpoint(other) as other_url:
            query, body = rig.fake.signed(rig.fake.text("o_kim", "confirm"))

            async def post(url: str) -> int:
                async with rig.session.post(url, params=query, data=body.encode()) as response:
                    await response.read()
                    return response.status

            statuses = await asyncio.gather(*(post(u) for u in (rig.url, other_url) * 3))
        assert statuses == [200] * 6
        assert list(rig.bot.handled.values()) == [1]


async def test_unfollow_closes_the_service_windows_until_a_new_follow(rig: WeChatRig) -> None:
    fake = rig.fake
    await fake.push(fake.text("o_lu", "hi"))
    await fake.push(fake.event("o_lu", "unsubscribe"))
    assert not await store.take_send(rig.db, "o_lu")
    await fake.push(fake.event("o_lu", "subscribe"))
    assert await store.take_send(rig.db, "o_lu")


async def test_template_delivery_results_are_recorded(rig: WeChatRig) -> None:
    rig.fake.template_status = "failed:user block"
    msg_id = await rig.api.send_template("o_mo", "TPL-receipt", {"shop": "绿色超市"})
    await rig.fake.wait_for(
        lambda: any(d.fields.get("MsgID") == msg_id and d.tries for d in rig.fake.deliveries)
    )
    assert await store.template_status(rig.db, msg_id) == "failed:user block"


async def test_a_stale_or_future_delivery_is_refused_even_with_a_valid_signature(
    db_url: str,
) -> None:
    """A captured delivery replayed after its dedupe row was purged would run again; its
    timestamp (covered by the signature) is what refuses it (endpoint freshness window)."""
    now = [1_800_000_000.0]
    async with wechat_rig(db_url, clock=lambda: now[0]) as rig:
        fake = rig.fake

        async def post(fields: dict[str, object], at: float) -> int:
            query, body = fake.signed(fields, timestamp=int(at))
            async with rig.session.post(rig.url, params=query, data=body.encode()) as response:
                await response.read()
                return response.status

        assert await post(fake.text("o_rex", "old"), now[0] - FRESH_SECONDS - 1) == 403
        assert await post(fake.text("o_rex", "future"), now[0] + FRESH_SECONDS + 1) == 403
        assert await post(fake.text("o_rex", "late but fresh"), now[0] - FRESH_SECONDS) == 200
        assert sum(rig.bot.handled.values()) == 1

        # The replay: a confirm handled once, its dedupe row purged, the same bytes again.
        confirm = fake.text("o_rex", "confirm")
        query, body = fake.signed(confirm, timestamp=int(now[0]))

        async def replay() -> int:
            async with rig.session.post(rig.url, params=query, data=body.encode()) as response:
                await response.read()
                return response.status

        assert await replay() == 200
        now[0] += 2 * FRESH_SECONDS + 1
        async with rig.db.session() as session:
            await session.execute(
                update(WeChatDelivery).values(
                    created_at=WeChatDelivery.created_at - dt.timedelta(days=1)
                )
            )
        assert await store.purge_deliveries(rig.db, dt.timedelta(hours=1)) == 2
        assert await replay() == 403
        assert sum(rig.bot.handled.values()) == 2  # "late but fresh" and the confirm, once
        with pytest.raises(ValueError, match="at least 600 s"):
            await store.purge_deliveries(rig.db, dt.timedelta(seconds=FRESH_SECONDS))
