"""Issue 11 in the bot, end to end on SQLite and PostgreSQL: the admins' daily alert of unusual
volume (the release announces the day before; every admin who has a chat with the bot is told,
in their language, once; members are not), a member told of a refund of their purchase, and
/balance showing pending points, in the three languages."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.chat.i18n import translator
from bot.outbox.notices import unusual_volume
from ledger.rules import Rules
from tests.bot_harness import Harness, running_bot
from tests.conftest import DATABASES
from tests.ledger_support import FixedClock

ADMIN, OTHER_ADMIN, MEMBER = 9101, 9102, 9103


@pytest.fixture(params=DATABASES)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    admins = frozenset({ADMIN, OTHER_ADMIN})
    async with running_bot(request.param, tmp_path, admin_ids=admins) as h:
        yield h


def test_the_alert_reads_in_each_language() -> None:
    payload = {"date": "2026-11-28", "merchant_name": "锦城超市", "day_fen": 1_234_500,
               "day_count": 37, "median_fen": 20_000}
    english = unusual_volume(translator("en"), payload)
    assert "Unusual volume" in english and "锦城超市" in english and "37" in english
    assert "12,345" in english and "200" in english
    assert "交易量异常" in unusual_volume(translator("zh_Hans"), payload)
    assert "交易量異常" in unusual_volume(translator("zh_Hant"), payload)
    assert "?" in unusual_volume(translator("en"), {"date": "not a date"})


async def test_admins_are_told_once_in_their_language(harness: Harness) -> None:
    h = harness
    ledger = h.ledger
    ledger.ctx.rules = Rules(
        points_hold_days=0, purchase_cap_count=0, unusual_volume_floor_fen=100_000
    )
    clock = FixedClock(dt.datetime(2026, 11, 22, 2, 0))  # 10:00 in Shanghai
    ledger.ctx.clock = clock
    admin = h.person(ADMIN, "Admin", "en")
    member = h.person(MEMBER, "Lin", "zh-hans")
    await h.ask(admin, "/start")  # the other admin never talked to the bot: not reachable
    await h.ask(member, "/start")
    await h.settle()
    profile = await h.services.chats.get(("telegram", str(MEMBER)))
    assert profile is not None and profile.member_id is not None
    shop = h.ledger_as("merchant", h.shop_id)
    await shop.record_purchase(h.shop_id, profile.member_id, 900_000, "unusual-big-1")
    await h.settle()
    before = {p: len(h.fake.to(p)) for p in (ADMIN, OTHER_ADMIN, MEMBER)}

    clock.advance(days=1)
    await h.ledger_as("admin").release(ledger.ctx.today())
    await h.settle()
    told = h.fake.to(ADMIN)[before[ADMIN]:]
    alerts = [s for s in told if s.text.startswith("⚠️ Unusual volume")]
    assert len(alerts) == 1, [s.text for s in told]
    assert "¥9,000.00" in alerts[0].text and "Please check" in alerts[0].text
    assert h.fake.to(OTHER_ADMIN)[before[OTHER_ADMIN]:] == []
    member_texts = [s.text for s in h.fake.to(MEMBER)[before[MEMBER]:]]
    assert not any("异常" in text for text in member_texts)

    await h.background.reader.catch_up()  # nothing new: nobody is told twice
    await h.settle()
    again = [s for s in h.fake.to(ADMIN) if s.text.startswith("⚠️ Unusual volume")]
    assert len(again) == 1


def test_a_refund_notice_says_what_was_taken_back() -> None:
    from bot.outbox.notices import render
    from ledger_client.models import Event

    def event(**payload: object) -> Event:
        return Event(id=1, seq=1, type="purchase.refunded", member_id=9, merchant_id=1,
                     payload=payload, created_at=dt.datetime(2026, 11, 22))

    t = translator("en")
    assert render(event(amount_fen=4000, points=-12, merchant_name="Shop"), t) == (
        "Shop refunded CN¥40.00 of your purchase.\n"
        "The 12 points it earned you were taken back."
    )
    assert render(event(amount_fen=50, points=0, merchant_name="Shop"), t) == (
        "Shop refunded CN¥0.50 of your purchase."
    )
    hans = render(event(amount_fen=4000, points=-1, merchant_name="店"), translator("zh_Hans"))
    assert hans is not None and "退款" in hans and "收回" in hans
    hant = render(event(amount_fen=4000, points=-1, merchant_name="店"), translator("zh_Hant"))
    assert hant is not None and "退款" in hant and "收回" in hant


async def test_the_member_is_told_of_a_refund(harness: Harness) -> None:
    h = harness
    h.ledger.ctx.rules = Rules(points_hold_days=7, purchase_cap_count=0)
    member = h.person(MEMBER, "Lin", "en")
    await h.ask(member, "/start")
    profile = await h.services.chats.get(("telegram", str(MEMBER)))
    assert profile is not None and profile.member_id is not None
    bought = await h.ledger_as("system").record_purchase(
        h.shop_id, profile.member_id, 10_000, "refund-notice-buy"
    )
    await h.settle()
    shown = await h.ask(member, "/balance")
    assert f"Of these, {bought.member_points} are pending" in shown.text, shown.text
    before = len(h.fake.to(MEMBER))
    await h.ledger_as("merchant", h.shop_id).refund_purchase(
        bought.purchase_id, h.shop_id, 10_000, "refund-notice-1"
    )
    await h.settle()
    told = [s.text for s in h.fake.to(MEMBER)[before:]]
    assert len(told) == 1 and "refunded CN¥100.00 of your purchase" in told[0], told
    assert f"The {bought.member_points} points it earned you were taken back." in told[0]
    balance = await h.services.ledger.balance(profile.member_id)
    assert balance.points == 0 and balance.pending_points == 0


def test_balance_shows_pending_points_in_each_language() -> None:
    from handlers.balance import balance_text
    from ledger_client.models import Balance, Price

    balance = Balance(
        member_id=1, points=1500, pending_points=300, points_value_fen=1500,
        price=Price(pool_fen=1, points=1, fen_per_point="1.0000"), vouchers_fen=0,
        nearest_expiry=None, nearest_expiry_fen=0, activity=[], activity_next_before=None,
    )
    assert "Of these, 300 are pending" in balance_text(translator("en"), balance)
    assert "其中 300 积分待确认" in balance_text(translator("zh_Hans"), balance)
    assert "其中 300 積分待確認" in balance_text(translator("zh_Hant"), balance)
    none_pending = balance.model_copy(update={"pending_points": 0})
    assert "pending" not in balance_text(translator("en"), none_pending)
