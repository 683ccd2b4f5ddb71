"""One member on Telegram and WeChat (issue 10): a person gets a one-time code on one channel and
types it on the other; from then balances, codes and notices follow the member, and notices go
only to the channel the person chose.

Both channels run for real against one ledger and one bot database, as two bot processes would:
Telegram through the fake Bot API (polling, with its event reader and sender), WeChat through the
fake WeChat server posting to the real /wechat endpoint. SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.channels.wechat.api import WeChatApi
from bot.channels.wechat.channel import WeChatChannel
from bot.channels.wechat.conversation import WeChatConversation
from bot.channels.wechat.endpoint import Handler
from bot.channels.wechat.features import features_runner
from bot.channels.wechat.notice_sender import WeChatNoticeSender
from bot.chat.i18n import translator
from bot.features import neutral_router
from bot.outbox.notices import notice_text
from bot.services import Services
from bot.storage.chats import utcnow
from bot.storage.db import BotDatabase
from bot.storage.links import WRONG_MAX
from bot.storage.schema import LinkCode, OutboxMessage
from ledger.principal import Principal
from ledger_client.inprocess import InProcessLedgerClient
from tests.bot_harness import Harness, running_bot, tg
from tests.fake_telegram import Person
from tests.fake_wechat import FakeWeChat
from tests.test_wechat_features import choice
from tests.wechat_harness import WeChatRig, wechat_rig

TEMPLATE = "/cgi-bin/message/template/send"
TEMPLATES = {"points.earned": "TPL-earned", "voucher.redeemed": "TPL-redeemed"}


@dataclass
class Both:
    telegram: Harness
    wechat: WeChatRig
    wx_services: Services

    @property
    def fake(self) -> FakeWeChat:
        return self.wechat.fake


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def both(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Both]:
    async with running_bot(request.param, tmp_path) as harness:
        settings = harness.services.settings
        client = InProcessLedgerClient(harness.ledger, Principal("bot"))
        db = BotDatabase(settings.database_url)
        services = Services(settings, client, db, channel="wechat")
        router = neutral_router()

        def handler(api: WeChatApi, _db: BotDatabase) -> Handler:
            return WeChatConversation(api, _db, features_runner(services, router))

        try:
            async with wechat_rig(settings.database_url, handler=handler) as rig:
                yield Both(harness, rig, services)
        finally:
            await client.close()
            await db.dispose()


def code_in(text: str) -> str:
    found = re.findall(r"/link (\d{8})", text)
    assert found, text
    return found[0]


async def earn(both: Both, member_id: int, fen: int) -> None:
    shop = both.telegram.ledger_as("merchant", both.telegram.shop_id)
    await shop.record_purchase(both.telegram.shop_id, member_id, fen, uuid.uuid4().hex)


async def wechat_outbox(both: Both) -> list[OutboxMessage]:
    async with both.wechat.db.session() as session:
        return list(
            (await session.scalars(select(OutboxMessage).where(OutboxMessage.channel == "wechat")))
            .all()
        )


def notices_to(harness: Harness, person: Person, after: int) -> list[str]:
    return [s.text for s in harness.fake.sent[after:]
            if s.chat_id == person.id and s.method == "sendMessage"]


async def on_telegram(h: Harness, user_id: int, name: str, language: str) -> tuple[Person, int]:
    """A Telegram person who started the bot, and their member id."""
    person = h.person(user_id, name, language)
    await h.ask(person, "/start")
    profile = await h.services.chats.get(tg(user_id))
    assert profile is not None and profile.member_id is not None
    return person, profile.member_id


async def linked_pair(both: Both, openid: str = "o_link") -> tuple[Person, int]:
    """A Telegram person with a member, and a WeChat follower who typed their code."""
    h = both.telegram
    tina, member_id = await on_telegram(h, 3001, "Tina", "zh-hans")
    await both.fake.push(both.fake.event(openid, "subscribe"))
    given = await h.ask(tina, "/link")
    done = await both.fake.push(both.fake.text(openid, f"/link {code_in(given.text)}"))
    assert done.text.startswith("关联成功！现在您在微信上使用的是Telegram账号的积分"), done.text
    return tina, member_id


async def test_a_telegram_code_typed_on_wechat_joins_balance_codes_and_notices(
    both: Both,
) -> None:
    h, fake = both.telegram, both.fake
    tina, member_id = await on_telegram(h, 3001, "Tina", "zh-hans")
    await earn(both, member_id, 1_234_500)

    hello = await fake.push(fake.event("o_link", "subscribe"))
    assert hello.text.startswith("欢迎使用绿色消费积分！"), hello.text
    before = await both.wx_services.chats.get(("wechat", "o_link"))
    assert before is not None and before.member_id not in (None, member_id)
    empty = await fake.push(fake.text("o_link", "/balance"))

    given = await h.ask(tina, "/link")
    code = code_in(given.text)
    assert "10 分钟内" in given.text and given.text.count(code) == 2
    done = await fake.push(fake.text("o_link", f"/link {code}"))
    assert done.text.startswith("关联成功！现在您在微信上使用的是Telegram账号的积分"), done.text
    assert "通知发送到Telegram。" in done.text
    after = await both.wx_services.chats.get(("wechat", "o_link"))
    assert after is not None and after.member_id == member_id

    telegram_says = await h.ask(tina, "/balance")
    on_wechat = await fake.push(fake.text("o_link", "/balance"))
    points = telegram_says.text.splitlines()[1]
    assert points.startswith("积分：") and points != empty.text.splitlines()[1], points
    assert on_wechat.text.splitlines()[1] == points, on_wechat.text

    # A redemption code shown on WeChat is the Telegram member's.
    await fake.push(fake.text("o_link", "/qr"))
    admin = h.ledger_as("admin")
    assert (await admin.resolve_member("wechat", "o_link")).id == member_id

    # Notices stay on Telegram until the person moves them.
    await h.settle()
    sent = len(h.fake.sent)
    await earn(both, member_id, 10_000)
    await h.settle()
    assert len(notices_to(h, tina, sent)) == 1
    assert await wechat_outbox(both) == []

    assert choice(done, "通知改发到微信")  # offered at once; taken here from /settings
    menu = await fake.push(fake.text("o_link", "/settings"))
    assert "已关联：Telegram · 微信。" in menu.text and "通知发送到Telegram。" in menu.text
    here = choice(menu, "通知改发到微信")
    moved = await fake.push(fake.text("o_link", "通知改发到微信", bizmsgmenuid=here))
    assert moved.text.startswith("从现在起通知发送到微信。"), moved.text
    sent = len(h.fake.sent)
    await earn(both, member_id, 20_000)
    await h.settle()
    assert notices_to(h, tina, sent) == []
    rows = await wechat_outbox(both)
    assert [(r.address, r.payload["kind"]) for r in rows] == [("o_link", "points.earned")]
    channel = WeChatChannel(
        both.wechat.api, both.wechat.db, TEMPLATES,
        lambda notice, locale: notice_text(notice, translator(locale)) or "",
    )
    sender = WeChatNoticeSender(both.wechat.db, both.wx_services.chats, channel)
    assert await sender.drain_once() == 1
    assert [c.body["touser"] for c in fake.calls_to(TEMPLATE)] == ["o_link"]

    # /settings on either side says what is linked and where notices go.
    shown = await h.ask(tina, "/settings")
    assert "已关联：Telegram · 微信。" in shown.text and "通知发送到微信。" in shown.text
    assert ("通知改发到Telegram", "nch|telegram") in shown.buttons


async def test_refusals_expired_used_wrong_self_already(both: Both) -> None:
    h, fake = both.telegram, both.fake
    tina, member_id = await linked_pair(both)

    own = await h.ask(tina, "/link")
    mine = await h.ask(tina, f"/link {code_in(own.text)}")
    assert mine.text.startswith("这是本对话给您的关联码。"), mine.text
    again = await fake.push(fake.text("o_link", f"/link {code_in(own.text)}"))
    assert again.text == "本对话已关联到这些积分，无需再操作。"

    # The same code typed by a second WeChat account: the member has a WeChat account already.
    await fake.push(fake.event("o_second", "subscribe"))
    taken = await fake.push(fake.text("o_second", f"/link {code_in(own.text)}"))
    assert taken.text.startswith("这些积分已关联本应用的另一个账号。"), taken.text

    # Another Telegram person's code: used once, then refused as used.
    ugo, _ugo_member = await on_telegram(h, 3002, "Ugo", "en")
    ugos = code_in((await h.ask(ugo, "/link")).text)
    await fake.push(fake.event("o_third", "subscribe"))
    assert (await fake.push(fake.text("o_third", f"/link {ugos}"))).text.startswith("关联成功")
    used = await fake.push(fake.text("o_second", f"/link {ugos}"))
    assert used.text.startswith("该关联码已被使用。"), used.text

    # Expired: ten minutes passed (the stored expiry moved into the past).
    late = code_in((await h.ask(ugo, "/link")).text)
    async with both.wechat.db.session() as session:
        await session.execute(update(LinkCode).where(LinkCode.used_at.is_(None))
                              .values(expires_at=utcnow()))
    expired = await fake.push(fake.text("o_second", f"/link {late}"))
    assert expired.text.startswith("该关联码已过期（关联码有效期 10 分钟）。"), expired.text

    # In English: a wrong code, and a code that is not one.
    wrong = await h.ask(ugo, "/link 0000 0000")
    assert wrong.text == "That is not a valid link code. Check the 8 digits and try again."
    shape = await h.ask(ugo, "/link 12")
    assert shape.text == "A link code is 8 digits, for example: /link 12345678"
    assert member_id


async def test_guessing_is_throttled_and_a_member_with_points_is_never_merged(
    both: Both,
) -> None:
    h, fake = both.telegram, both.fake
    vic, _vic_member = await on_telegram(h, 3003, "Vic", "zh-hant")
    code = code_in((await h.ask(vic, "/link")).text)
    await fake.push(fake.event("o_guess", "subscribe"))
    guesses = [f"{n:08d}" for n in range(WRONG_MAX + 1) if f"{n:08d}" != code][:WRONG_MAX]
    for guess in guesses:
        wrong = await fake.push(fake.text("o_guess", f"/link {guess}"))
        assert wrong.text.startswith("关联码不正确。"), wrong.text
    refused = await fake.push(fake.text("o_guess", f"/link {code}"))
    assert refused.text.startswith("错误次数过多，请在 "), refused.text

    # A WeChat follower whose own member already earned points cannot join Vic's.
    await fake.push(fake.event("o_rich", "subscribe"))
    rich = await both.wx_services.chats.get(("wechat", "o_rich"))
    assert rich is not None and rich.member_id is not None
    await earn(both, rich.member_id, 10_000)
    kept = await fake.push(fake.text("o_rich", f"/link {code}"))
    assert kept.text.startswith("本对话已有自己的积分、抵用券或核销码"), kept.text
    assert (await h.ledger_as("admin").resolve_member("wechat", "o_rich")).id == rich.member_id

    # The code was released, not used up: the settings flow takes it from a follower with none.
    await fake.push(fake.event("o_new", "subscribe"))
    menu = await fake.push(fake.text("o_new", "/settings"))
    have = choice(menu, "我有关联码")
    enter = await fake.push(fake.text("o_new", "我有关联码", bizmsgmenuid=have))
    assert enter.text == "请输入另一个应用给您的 8 位关联码。"
    joined = await fake.push(fake.text("o_new", code[:4] + " " + code[4:]))
    assert joined.text.startswith("关联成功！"), joined.text
    shown = await h.ask(vic, "/settings")
    assert "已關聯：Telegram · 微信。" in shown.text, shown.text


async def test_a_wechat_code_typed_on_telegram_brings_the_wechat_points(both: Both) -> None:
    """The other way round: the code comes from WeChat, a Telegram person who only said /start
    types it, and their Telegram chat now shows the WeChat follower's points."""
    h, fake = both.telegram, both.fake
    await fake.push(fake.event("o_first", "subscribe"))
    follower = await both.wx_services.chats.get(("wechat", "o_first"))
    assert follower is not None and follower.member_id is not None
    await earn(both, follower.member_id, 50_000)
    given = await fake.push(fake.text("o_first", "/link"))
    wen, _empty = await on_telegram(h, 3004, "Wen", "en")
    done = await h.ask(wen, f"/link {code_in(given.text)}")
    assert done.text.startswith("Linked! Here on Telegram you now have the points of your "
                                "WeChat account"), done.text
    assert ("Send notices to Telegram", "nch|telegram") in done.buttons
    profile = await h.services.chats.get(tg(3004))
    assert profile is not None and profile.member_id == follower.member_id
    shown = (await h.ask(wen, "/balance")).text.splitlines()[1]  # in Wen's English
    there = (await fake.push(fake.text("o_first", "/balance"))).text.splitlines()[1]
    assert shown.removeprefix("Points: ") == there.removeprefix("积分：") == "3,000"
