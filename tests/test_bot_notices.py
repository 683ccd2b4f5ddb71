"""Notices, end to end: ledger events → event reader → outbox → sender → the fake Bot API, in the
member's language, on SQLite and PostgreSQL; plus each notice's English wording on its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.chat import formatting
from bot.chat.i18n import translator
from bot.outbox.event_reader import CURSOR, ReaderTuning
from bot.outbox.notices import gather, notice_text, render
from bot.storage import cursors
from bot.storage.schema import OutboxMessage
from ledger_client.models import Event
from tests.bot_harness import Harness, running_bot, tg
from tests.conftest import DATABASES
from tests.fake_telegram import Person, Sent
from tests.ledger_support import FixedClock

BIG_PURCHASE = 200_000  # ¥2,000.00: enough points for a visible release


@pytest.fixture(params=DATABASES)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(request.param, tmp_path) as h:
        yield h


async def started(h: Harness, person: Person) -> int:
    """The person says /start; returns their member id once the bot has answered."""
    before = len(h.fake.sent)
    person.says("/start")
    await h.fake.next_to(person.id, before)
    profile = await h.services.chats.get(tg(person.id))
    assert profile is not None and profile.member_id is not None
    return profile.member_id


async def notices_after(h: Harness, chat_id: int) -> list[Sent]:
    """What the bot sends the chat on its own once everything pending has been settled."""
    before = len(h.fake.to(chat_id))
    await h.settle()
    return h.fake.to(chat_id)[before:]


async def member_events(h: Harness, member_id: int) -> list[Event]:
    page = await h.services.ledger.events(after=0, limit=1000)
    return [e for e in page.events if e.member_id == member_id]


async def outbox_rows(h: Harness) -> int:
    async with h.services.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


# --- every event type, in each language -------------------------------------------------------


@pytest.mark.parametrize(
    ("language_code", "locale", "word"),
    [("zh-hans", "zh_Hans", "积分"), ("zh-TW", "zh_Hant", "積分"), ("en", "en", "points")],
)
async def test_every_event_is_told_in_the_members_language(
    harness: Harness, language_code: str, locale: str, word: str
) -> None:
    h = harness
    clock = FixedClock(dt.datetime(2026, 11, 22, 2, 0))  # a Sunday, 10:00 in Shanghai
    h.ledger.ctx.clock = clock
    h.background.reader.clock = clock
    person = h.person(2001, "Lin", language_code)
    member_id = await started(h, person)
    t = translator(locale)
    shop = h.ledger_as("merchant", h.shop_id)

    purchase = await shop.record_purchase(h.shop_id, member_id, BIG_PURCHASE, "buy-00001")
    [earned] = await notices_after(h, person.id)
    event = (await member_events(h, member_id))[-1]
    assert event.type == "points.earned" and earned.text == render(event, t)
    assert word in earned.text and "锦城绿色生活超市" in earned.text
    assert formatting.money(t, BIG_PURCHASE) in earned.text
    assert formatting.number(t, purchase.member_points) in earned.text

    await h.ledger_as("admin").release()
    assert await notices_after(h, person.id) == []  # a grant waits for the week's digest
    event = (await member_events(h, member_id))[-1]
    assert event.type == "voucher.granted"
    clock.advance(days=7)  # past the week's end (Monday 08:00 local, after the quiet hours)
    [digest] = await notices_after(h, person.id)
    assert digest.text == notice_text(gather(event.type, [event.payload]), t)
    assert formatting.money(t, event.payload["vouchers_fen"]) in digest.text
    expires = dt.datetime.fromisoformat(event.payload["expires_at"])
    assert formatting.day(t, expires) in digest.text

    code = await h.services.ledger.issue_code(member_id)
    shown = await shop.preview_redemption(code.numeric_code, h.shop_id, 500)
    receipt = await shop.redeem(
        code.numeric_code,
        h.shop_id,
        500,
        "redeem-00001",
        vouchers_applied_fen=shown.vouchers_applied_fen,
        pay_fen=shown.pay_fen,
    )
    assert 0 < receipt.vouchers_applied_fen < event.payload["vouchers_fen"]  # some are left
    [redeemed] = await notices_after(h, person.id)
    event = (await member_events(h, member_id))[-1]
    assert event.type == "voucher.redeemed" and redeemed.text == render(event, t)
    for amount in (receipt.vouchers_applied_fen, receipt.pay_fen):
        assert formatting.money(t, amount) in redeemed.text
    assert formatting.number(t, receipt.points_earned) in redeemed.text

    clock.advance(days=81)  # the vouchers now expire within the 3-day notice window
    await h.ledger_as("admin").release()
    notices = await notices_after(h, person.id)  # warned on one of the person's warning
    clock.advance(days=1)  # days (bot.outbox.policy.warning_due): today or tomorrow
    notices += await notices_after(h, person.id)
    expiring = [e for e in await member_events(h, member_id) if e.type == "voucher.expiring"]
    assert len(expiring) == 1
    expected = render(expiring[0], t)
    texts = [n.text for n in notices]  # (and the week's digest, if this person's week ended)
    assert expected is not None and texts.count(expected) == 1 and len(texts) <= 2
    assert formatting.day(t, expires) in expected


def test_each_notice_says_what_happened() -> None:
    t = translator("en")

    def event(type_: str, **payload: object) -> Event:
        return Event(id=1, seq=1, type=type_, member_id=9, merchant_id=None,
                     payload=payload, created_at=dt.datetime(2026, 11, 22))

    assert render(event("points.earned", points=1, amount_fen=150, merchant_name="Tea"), t) == (
        "You earned 1 point at Tea on a purchase of CN¥1.50."
    )
    assert render(event("points.earned", points=1200, amount_fen=8850, merchant_name="Shop",
                        green=True), t) == (
        "You earned 1,200 points at Shop on a purchase of CN¥88.50.\n"
        "Thank you for choosing green: your green bonus is included."
    )
    assert render(event("voucher.granted", vouchers_fen=196,
                        expires_at="2027-02-20T02:00:00"), t) == (
        "New vouchers: CN¥1.96 from today's release of your points.\n"
        "Use them at any alliance merchant by Feb 20, 2027.\n"
        "Show /qr at the till to use them."
    )
    assert render(event("voucher.redeemed", vouchers_fen=1000, pay_fen=4000, points=12,
                        merchant_name="Shop"), t) == (
        "You used CN¥10.00 of vouchers at Shop and paid CN¥40.00.\n"
        "The purchase earned you 12 points."
    )
    assert render(event("voucher.redeemed", vouchers_fen=0, pay_fen=500, points=0,
                        merchant_name="Shop"), t) == "You paid CN¥5.00 at Shop."
    assert render(event("voucher.expiring", vouchers_fen=12,
                        expires_at="2027-02-20T02:00:00"), t) == (
        "Reminder: CN¥0.12 of your vouchers expire on Feb 20, 2027.\n"
        "Show /qr at any alliance merchant before then to use them."
    )
    assert render(event("voucher.granted", vouchers_fen=0), t) is None
    assert render(event("merchant.something"), t) is None


# --- who is told, and how often ---------------------------------------------------------------


async def test_a_member_with_notices_off_is_told_nothing(harness: Harness) -> None:
    h = harness
    person = h.person(2101, "Mo", "en")
    member_id = await started(h, person)
    shop = h.ledger_as("merchant", h.shop_id)

    before = len(h.fake.sent)
    person.says("/settings")
    menu = await h.fake.next_to(person.id, before)
    label, data = menu.buttons[0]
    assert label == "Turn notices off"
    before = len(h.fake.sent)
    person.taps(data, menu)
    await h.fake.next_to(person.id, before)

    await shop.record_purchase(h.shop_id, member_id, 10_000, "quiet-00001")
    assert await notices_after(h, person.id) == []
    assert await outbox_rows(h) == 0  # not even queued

    await h.services.chats.set_notices(tg(person.id), True)
    await shop.record_purchase(h.shop_id, member_id, 10_000, "loud-000001")
    assert len(await notices_after(h, person.id)) == 1


async def test_reading_the_feed_again_tells_nobody_twice(harness: Harness) -> None:
    h = harness
    person = h.person(2201, "Qi", "en")
    member_id = await started(h, person)
    shop = h.ledger_as("merchant", h.shop_id)
    reader = h.background.reader
    start = await reader.position()

    for n in range(3):
        await shop.record_purchase(h.shop_id, member_id, 1_000 * (n + 1), f"twice-0000{n}")
    assert len(await notices_after(h, person.id)) == 3

    told = len(h.fake.to(person.id))
    async with h.services.db.session() as session:  # replay: move the cursor back
        assert await cursors.advance(session, CURSOR, await reader.position(), start)
    assert await reader.catch_up() == 3
    await shop.record_purchase(h.shop_id, member_id, 4_000, "twice-00003")
    # Two readers on the same page at once (two processes, or a poll racing settle).
    await asyncio.gather(reader.poll_once(), reader.poll_once())
    await h.settle()
    notices = h.fake.to(person.id)[told:]
    assert len(notices) == 1 and formatting.money(translator("en"), 4_000) in notices[0].text
    assert await outbox_rows(h) == 4
    assert len(h.fake.to(person.id)) == 1 + 4  # the welcome, and one notice per purchase


async def test_blocked_chats_are_skipped_until_the_person_starts_again(harness: Harness) -> None:
    h = harness
    person = h.person(2301, "Bo", "en")
    member_id = await started(h, person)
    shop = h.ledger_as("merchant", h.shop_id)

    h.fake.misbehave.blocked = {person.id}
    await shop.record_purchase(h.shop_id, member_id, 1_000, "blocked-00001")
    await h.settle()
    assert [a.status for a in h.fake.attempts if a.chat_id == person.id][-1] == 403
    profile = await h.services.chats.get(tg(person.id))
    assert profile is not None and profile.blocked
    refusals = len(h.fake.attempts)

    await shop.record_purchase(h.shop_id, member_id, 2_000, "blocked-00002")
    await h.settle()
    assert len(h.fake.attempts) == refusals  # not even tried
    assert await outbox_rows(h) == 1

    h.fake.misbehave.blocked = set()
    await started(h, person)  # they unblock the bot and press Start
    await shop.record_purchase(h.shop_id, member_id, 3_000, "unblocked-00001")
    [notice] = await notices_after(h, person.id)
    assert formatting.money(translator("en"), 3_000) in notice.text


# --- the ledger going away ------------------------------------------------------------------


@pytest.mark.parametrize("kind", DATABASES)
async def test_the_reader_backs_off_while_the_ledger_is_down_and_catches_up(
    kind: str, tmp_path: Path
) -> None:
    tuning = ReaderTuning(backoff_base=0.05, backoff_cap=0.4)
    async with running_bot(kind, tmp_path, ledger="http", event_poll_seconds=0.05,
                           reader_tuning=tuning) as h:
        person = h.person(2401, "Yu", "en")
        member_id = await started(h, person)
        reader = h.background.reader
        await h.stop_ledger()
        shop = h.ledger_as("merchant", h.shop_id)  # the shop's till still reaches the ledger
        amounts = [1_100, 2_200, 3_300]
        for n, fen in enumerate(amounts):
            await shop.record_purchase(h.shop_id, member_id, fen, f"outage-0000{n}")

        await reader.wait_until(lambda r: r.failures >= 6)
        assert reader.delays[:6] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]  # doubling, then capped
        assert len(h.fake.to(person.id)) == 1  # only the welcome so far

        await h.restart_ledger()
        await h.fake.wait_for(lambda _sent: len(h.fake.to(person.id)) == 1 + len(amounts))
        await h.settle()
        notices = h.fake.to(person.id)[1:]
        t = translator("en")
        for fen in amounts:  # each purchase told exactly once
            assert sum(formatting.money(t, fen) in n.text for n in notices) == 1
        assert sorted(n.text for n in notices) == sorted(
            render(e, t) or "" for e in await member_events(h, member_id)
        )
        assert reader.failures == 0


def test_a_notice_keeps_plain_fields_and_reads_as_the_event_did() -> None:
    """Issue 9: notices as kind + fields (a WeChat template needs the fields, not the text),
    rendered in the same words as before for channels that send text."""
    from bot.outbox.notices import as_notice, notice_text
    from ledger_client.models import Event

    t = translator("en")
    event = Event(id=1, seq=1, type="points.earned", member_id=9, merchant_id=3,
                  payload={"points": 1200, "amount_fen": 8850, "merchant_name": "\u202eShop",
                           "green": True}, created_at=dt.datetime(2026, 11, 22))
    notice = as_notice(event)
    assert notice is not None and notice.kind == "points.earned"
    assert dict(notice.fields) == {"points": 1200, "amount_fen": 8850,
                                   "merchant_name": "\u202eShop", "green": 1}
    assert notice_text(notice, t) == (
        "You earned 1,200 points at Shop on a purchase of CN¥88.50.\n"
        "Thank you for choosing green: your green bonus is included."
    )
    assert as_notice(event.model_copy(update={"type": "member.created"})) is None
