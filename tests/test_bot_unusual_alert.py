"""The admins' daily alert of unusual volume (issue 11), end to end on SQLite and PostgreSQL:
the release announces the day before; the event reader tells every admin who has a chat with
the bot, in their language, once (reading the feed again repeats nothing); members are not
told; without admins nobody is."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.i18n import translator
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
