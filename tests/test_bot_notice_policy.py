"""The notice policy (issue 12; DESIGN.md "Notices at the alliance's scale") with an injected
clock, no sleeps: receipts at once, grants in one digest per person per period (chosen in
/settings), expiry warnings deferred past local quiet hours across midnight, a person in another
zone, every grant in exactly one digest, a replay after pruning still told once, one feed reader
per deployment, and /balance's exit-cap sentence (issue 13) — on SQLite and PostgreSQL through
the fake Bot API.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.chat import formatting
from bot.chat.i18n import translator
from bot.outbox import notices, policy
from bot.outbox.event_reader import CURSOR, EventReader
from bot.services import Services
from bot.storage import cursors, outbox
from bot.storage.db import BotDatabase
from bot.storage.schema import OutboxMessage
from handlers.balance import capped_line
from ledger.rules import Rules
from ledger_client.models import CappedExit, Event
from tests.bot_harness import Harness, running_bot, tg
from tests.conftest import DATABASES
from tests.fake_telegram import Person, Sent
from tests.ledger_support import FixedClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
QUIET = policy.QuietHours.parse("21:00-08:00")
MONDAY_10H = dt.datetime(2026, 11, 23, 2, 0)  # 10:00 in Shanghai, a Monday


def on_mondays(start: int) -> int:
    """A Telegram user id from ``start`` on whose weekly digest period ends on Mondays (each
    person's week ends on a weekday of their own, so the alliance's digests spread out)."""
    return next(u for u in range(start, start + 100)
                if policy.digest_weekday("telegram", str(u)) == 0)


def utc(local: str, tz: ZoneInfo = SHANGHAI) -> dt.datetime:
    """A local wall-clock time as naive UTC, as the bot's tables hold moments."""
    aware = dt.datetime.fromisoformat(local).replace(tzinfo=tz)
    return aware.astimezone(dt.UTC).replace(tzinfo=None)


# --- the rules on their own -------------------------------------------------------------------


def test_quiet_hours_defer_across_midnight_to_their_end() -> None:
    for local, expected in [
        ("2026-11-23 22:30", "2026-11-24 08:00"),  # before midnight: the next morning
        ("2026-11-24 00:30", "2026-11-24 08:00"),  # after midnight: the same morning
        ("2026-11-24 07:59", "2026-11-24 08:00"),
        ("2026-11-24 21:00", "2026-11-25 08:00"),  # the first quiet minute
    ]:
        assert policy.after_quiet(utc(local), SHANGHAI, QUIET) == utc(expected), local
    for local in ("2026-11-24 08:00", "2026-11-24 20:59"):  # not quiet: at once
        assert policy.after_quiet(utc(local), SHANGHAI, QUIET) == utc(local)
    none = policy.QuietHours.parse("00:00-00:00")
    assert policy.after_quiet(utc("2026-11-24 03:00"), SHANGHAI, none) == utc("2026-11-24 03:00")
    for bad in ("21-08", "25:00-08:00", "21:00-08:61", ""):
        with pytest.raises(ValueError):
            policy.QuietHours.parse(bad)


def test_digest_periods_end_at_local_midnight_or_monday() -> None:
    sunday_late = utc("2026-11-29 23:59")
    assert policy.period_end(sunday_late, "weekly", SHANGHAI) == utc("2026-11-30 00:00")
    assert policy.period_end(utc("2026-11-30 00:00"), "weekly", SHANGHAI) == utc(
        "2026-12-07 00:00"
    )
    assert policy.period_end(sunday_late, "daily", SHANGHAI) == utc("2026-11-30 00:00")
    # The same moment is still Sunday afternoon in London: its week ends at London's midnight.
    assert policy.period_end(sunday_late, "weekly", LONDON) == utc("2026-11-30 00:00", LONDON)
    with pytest.raises(ValueError):
        policy.period_end(sunday_late, "off", SHANGHAI)
    # A week that ends on Thursdays: from Thursday 00:00 to the next Thursday 00:00.
    assert policy.period_end(utc("2026-11-26 00:00"), "weekly", SHANGHAI, 3) == utc(
        "2026-12-03 00:00"
    )
    assert policy.period_end(sunday_late, "weekly", SHANGHAI, 3) == utc("2026-12-03 00:00")
    days = [policy.digest_weekday("telegram", str(n)) for n in range(7000)]
    assert all(900 <= days.count(d) <= 1100 for d in range(7))  # spread over the week


def test_when_each_kind_is_due() -> None:
    happened = utc("2026-11-24 22:30")
    read = happened + dt.timedelta(minutes=1)

    def due(kind: str, period: policy.Period = "weekly", at: dt.datetime = read) -> object:
        return policy.due(kind, happened, at, period=period, tz=SHANGHAI, quiet=QUIET)

    assert due("points.earned") == read  # a receipt goes at once, quiet hours or not
    assert due("voucher.redeemed") == read
    # Warnings: on the person's next warning day (every third, a phase of their own), at the
    # end of their quiet hours, unless that is less than 12 h before the first expiry.
    expires = utc("2026-11-28 12:00")
    days = {
        phase: policy.warning_due(read, expires, SHANGHAI, QUIET, phase) for phase in range(3)
    }
    assert sorted(days.values()) == [utc("2026-11-25 08:00"), utc("2026-11-26 08:00"),
                                     utc("2026-11-27 08:00")]
    soon = utc("2026-11-25 12:00")  # no warning day early enough: when the quiet ends
    assert {policy.warning_due(read, soon, SHANGHAI, QUIET, p) for p in range(3)} == {
        utc("2026-11-25 08:00")
    }
    midday = utc("2026-11-25 13:00")
    late = policy.warning_due(midday, utc("2026-11-25 20:00"), SHANGHAI, QUIET, 0)
    assert late == midday  # no warning day left before it expires: now
    assert due("voucher.granted") == utc("2026-11-30 08:00")  # Monday morning
    assert due("voucher.granted", "daily") == utc("2026-11-25 08:00")
    assert due("voucher.granted", "off") is None
    late = utc("2026-12-09 12:00")  # read after its period ended (an outage): not held longer
    assert due("voucher.granted", at=late) == late
    assert policy.period_of(None, "daily") == "daily"
    assert policy.period_of("off", "weekly") == "off"
    assert policy.period_of("hourly", "nonsense") == "weekly"


def test_a_digest_adds_up_its_grants_and_names_the_capped_part() -> None:
    grants = [
        {"vouchers_fen": 196, "points_burned": 98, "expires_at": "2027-02-21T02:00:00",
         "release_date": "2026-11-23"},
        {"vouchers_fen": 7920, "points_burned": 4950, "expires_at": "2027-02-22T02:00:00",
         "release_date": "2026-11-24", "capped": 1},
        {"vouchers_fen": 4, "points_burned": 2, "expires_at": "2027-02-22T02:00:00",
         "release_date": "2026-11-24"},
    ]
    digest = notices.gather("voucher.granted", grants)
    assert dict(digest.fields) == {
        "grants": 3, "vouchers_fen": 8120, "capped_fen": 7920, "capped_points": 4950,
        "since": "2026-11-23", "expires_at": "2027-02-21T02:00:00",
    }
    assert notices.notice_text(digest, translator("en")) == (
        "Since Nov 23, 2026 your points became CN¥81.20 of vouchers in 3 releases.\n"
        "Of these, CN¥79.20 came from 4,950 points that reached their cap and became vouchers.\n"
        "The first of them expire on Feb 21, 2027.\n"
        "Show /qr at the till to use them."
    )
    plain = notices.gather("voucher.granted", grants[:1])
    text = notices.notice_text(plain, translator("en"))
    assert text is not None and "cap" not in text and "in 1 release." in text
    for locale in ("zh_Hans", "zh_Hant"):
        said = notices.notice_text(digest, translator(locale))
        assert said is not None and "封" in said and "4,950" in said
    warning = notices.gather("voucher.expiring", [
        {"vouchers_fen": 12, "expires_at": "2027-02-21T02:00:00"},
        {"vouchers_fen": 30, "expires_at": "2027-02-20T02:00:00"},
    ])
    assert dict(warning.fields) == {"vouchers_fen": 42, "expires_at": "2027-02-20T02:00:00"}


# --- end to end -------------------------------------------------------------------------------


@pytest.fixture(params=DATABASES)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(request.param, tmp_path) as h:
        yield h


def clocked(h: Harness, start: dt.datetime) -> FixedClock:
    """One clock for the ledger (events' times) and the bot (what is due now)."""
    clock = FixedClock(start)
    h.ledger.ctx.clock = clock
    h.background.reader.clock = clock
    return clock


async def started(h: Harness, person: Person) -> int:
    await h.ask(person, "/start")
    profile = await h.services.chats.get(tg(person.id))
    assert profile is not None and profile.member_id is not None
    return profile.member_id


async def told(h: Harness, person: Person) -> list[Sent]:
    """What the bot sends the person on its own once everything due now has been settled."""
    before = len(h.fake.to(person.id))
    await h.settle()
    return h.fake.to(person.id)[before:]


async def events_of(h: Harness, member_id: int, kind: str) -> list[Event]:
    page = await h.services.ledger.events(after=0, limit=1000)
    return [e for e in page.events if e.member_id == member_id and e.type == kind]


async def rows(h: Harness) -> list[OutboxMessage]:
    async with h.services.db.session() as session:
        found = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return list(found.all())


async def test_grants_come_in_one_digest_per_period_each_grant_in_exactly_one(
    harness: Harness,
) -> None:
    h = harness
    clock = clocked(h, MONDAY_10H)
    person = h.person(on_mondays(3101), "Ada", "en")
    member_id = await started(h, person)
    t = translator("en")
    menu = await h.ask(person, "/settings")
    assert "one message a week" in menu.text  # the default
    labels = dict(menu.buttons)
    assert "✓ Weekly" in labels
    chosen = await h.tap(person, labels["Daily"], menu)
    assert "one message a day" in chosen.text and "✓ Daily" in dict(chosen.buttons)

    shop = h.ledger_as("merchant", h.shop_id)
    await shop.record_purchase(h.shop_id, member_id, 200_000, "digest-00001")
    [receipt] = await told(h, person)  # a receipt goes at once
    assert formatting.money(t, 200_000) in receipt.text
    admin = h.ledger_as("admin")
    await admin.release()
    assert await told(h, person) == []  # held for the day's digest

    clock.now = utc("2026-11-24 07:59")  # the period ended at midnight, but it is still quiet
    assert await told(h, person) == []
    clock.now = utc("2026-11-24 08:00")
    [first] = await told(h, person)
    grants = await events_of(h, member_id, "voucher.granted")
    assert first.text == notices.notice_text(
        notices.gather("voucher.granted", [grants[0].payload]), t
    )

    # Three more days' releases under a weekly digest: all in the one message next Monday.
    await h.services.chats.set_digest(tg(person.id), "weekly")
    for day in ("2026-11-24", "2026-11-25", "2026-11-26"):
        clock.now = utc(f"{day} 10:00")
        await admin.release()
        assert await told(h, person) == []
    clock.now = utc("2026-11-30 07:59")
    assert await told(h, person) == []
    clock.now = utc("2026-11-30 08:00")
    [second] = await told(h, person)
    grants = await events_of(h, member_id, "voucher.granted")
    assert len(grants) == 4
    assert second.text == notices.notice_text(
        notices.gather("voucher.granted", [g.payload for g in grants[1:]]), t
    )
    assert "in 3 releases" in second.text

    # Every grant's row ended gathered into exactly one of the two digests that were sent.
    table = await rows(h)
    by_key = {r.dedupe_key: r for r in table}
    into = [by_key[f"event:{g.id}"] for g in grants]
    assert {r.state for r in into} == {outbox.GATHERED}
    digests = [r for r in table if r.dedupe_key and r.dedupe_key.startswith("gathered:")]
    assert [r.state for r in digests] == [outbox.SENT, outbox.SENT]
    assert sorted(r.last_error or "" for r in into) == sorted(
        [digests[0].dedupe_key or ""] + [digests[1].dedupe_key or ""] * 3
    )
    assert sum(r.payload["fields"]["grants"] for r in digests) == len(grants)
    clock.advance(days=7)
    assert await told(h, person) == []  # nothing left to tell


async def test_expiry_warnings_wait_out_local_quiet_hours_in_each_persons_zone(
    harness: Harness,
) -> None:
    h = harness
    clock = clocked(h, MONDAY_10H)
    here, away = h.person(3201, "Bo", "en"), h.person(3202, "Cy", "en")
    shop = h.ledger_as("merchant", h.shop_id)
    members = {}
    for person in (here, away):
        members[person.id] = await started(h, person)
        await shop.record_purchase(h.shop_id, members[person.id], 200_000, f"zone-{person.id}")
    await h.services.chats.set_timezone(tg(away.id), "Europe/London")
    for person in (here, away):  # grants told by no digest: only the warnings are watched
        await h.services.chats.set_digest(tg(person.id), "off")
    admin = h.ledger_as("admin")
    await admin.release()
    await told(h, here)

    # 88 days on (22:30 in Shanghai, 14:30 in London) the vouchers come within the ledger's
    # 3-day warning horizon; each person is warned on a morning of their own warning days.
    read_at = clock.now = utc("2027-02-18 22:30")
    await admin.release()
    t = translator("en")
    plan = []
    for person, tz in ((here, SHANGHAI), (away, LONDON)):
        [expiring] = await events_of(h, members[person.id], "voucher.expiring")
        expires = notices.expiry_of(expiring.payload)
        assert expires == utc("2027-02-21 10:00")
        phase = policy.phase("telegram", str(person.id), policy.WARNING_EVERY)
        due = policy.warning_due(read_at, expires, tz, QUIET, phase)
        local_due = due.replace(tzinfo=dt.UTC).astimezone(tz)
        assert not QUIET.contains(local_due.time()) and due <= expires - dt.timedelta(hours=12)
        plan.append((due, person, notices.render(expiring, t)))
    assert plan[0][0] > read_at  # 22:30 is quiet in Shanghai: deferred past midnight
    for due, person, expected in sorted(plan, key=lambda p: p[0]):
        clock.now = max(read_at, due - dt.timedelta(minutes=1))
        if due > read_at:
            assert await told(h, person) == []
        clock.now = due
        [warned] = await told(h, person)  # deferred, not dropped
        assert warned.text == expected


async def test_an_event_replayed_after_its_row_was_pruned_is_not_told_again(
    harness: Harness,
) -> None:
    h = harness
    clock = clocked(h, MONDAY_10H)
    person = h.person(3301, "Di", "en")
    member_id = await started(h, person)
    reader = h.background.reader
    start = await reader.position()
    shop = h.ledger_as("merchant", h.shop_id)
    for n in range(3):
        await shop.record_purchase(h.shop_id, member_id, 1_000 * (n + 1), f"prune-0000{n}")
    assert len(await told(h, person)) == 3

    clock.advance(days=h.services.settings.outbox_retention_days + 1)
    assert await reader.prune() == 3
    assert await rows(h) == []
    async with h.services.db.session() as session:  # replay: move the cursor back
        assert await cursors.advance(session, CURSOR, await reader.position(), start)
    assert await reader.catch_up() == 3
    assert await rows(h) == []
    assert await told(h, person) == []
    await shop.record_purchase(h.shop_id, member_id, 4_000, "prune-00003")  # new: told
    [notice] = await told(h, person)
    assert formatting.money(translator("en"), 4_000) in notice.text


async def test_only_one_process_reads_the_feed(harness: Harness) -> None:
    h = harness
    person = h.person(3401, "Ed", "en")
    member_id = await started(h, person)
    first = h.background.reader
    assert await first.owns_feed()
    db = BotDatabase(h.services.settings.database_url)  # a second process on the same database
    second = EventReader(Services(h.services.settings, h.services.ledger, db))
    try:
        shop = h.ledger_as("merchant", h.shop_id)
        await shop.record_purchase(h.shop_id, member_id, 1_000, "feed-lock-01")
        assert await second.catch_up() == 0 and not await second.owns_feed()
        assert second.events_read == 0
        assert len(await told(h, person)) == 1  # the first reader told it

        first.stop()  # the first process goes away, its lock with it
        await first.release()
        await shop.record_purchase(h.shop_id, member_id, 2_000, "feed-lock-02")
        assert await second.catch_up() == 1 and second.holds_lock
        async with db.session() as session:
            assert await cursors.get(session, CURSOR) is not None
    finally:
        await second.release()
        await db.dispose()


@pytest.mark.parametrize(
    ("language_code", "locale"), [("zh-hans", "zh_Hans"), ("zh-TW", "zh_Hant"), ("en", "en")]
)
async def test_balance_and_digest_say_when_points_reached_their_cap(
    harness: Harness, language_code: str, locale: str
) -> None:
    h = harness
    clock = clocked(h, MONDAY_10H)
    # One holder, no merchant points: the first purchase doubles the price at once (issue 13).
    h.ledger.ctx.rules = Rules(member_share_bp=5000, merchant_share_bp=0, exit_cap=True)
    person = h.person(on_mondays(3501), "Fu", language_code)
    member_id = await started(h, person)
    shop = h.ledger_as("merchant", h.shop_id)
    await shop.record_purchase(h.shop_id, member_id, 100_000, "capped-00001")
    await h.ledger_as("admin").release()
    t = translator(locale)

    shown = await h.ask(person, "/balance")
    day = h.ledger.ctx.today()
    expected = capped_line(t, CappedExit(date=day, points=4950, vouchers_fen=7920))
    assert expected in shown.text
    assert formatting.number(t, 4950) in expected and formatting.money(t, 7920) in expected

    clock.now = utc("2026-11-30 08:00")
    told_now = await told(h, person)
    [digest] = [s for s in told_now if formatting.money(t, 7920) in s.text]
    grants = await events_of(h, member_id, "voucher.granted")
    fields = [n.fields for g in grants if (n := notices.as_notice(g)) is not None]
    assert len(fields) == 2  # the day's 1 %, and the capped lot
    assert digest.text == notices.notice_text(notices.gather("voucher.granted", fields), t)


async def test_the_demo_shows_a_releases_digest_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``printf ':release\\n' | greenpoints demo``: the demo cannot wait for Monday, so its
    :release gathers the person's held grants into their digest at once."""
    import io

    from bot.channels.console import demo as console

    monkeypatch.setenv("GREENPOINTS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("GREENPOINTS_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    out = io.StringIO()
    assert await console.run(tmp_path, io.StringIO(":buy 200\n:release\n"), out) == 0
    after = out.getvalue().split("> :release", 1)[1]
    t = translator("zh_Hans")  # the demo person's language
    assert t._("Show /qr at the till to use them.") in after
    digest = t.ngettext(
        "Since {date} your points became {amount} of vouchers in {count} release.",
        "Since {date} your points became {amount} of vouchers in {count} releases.", 1,
    )
    for words in re.split(r"\{\w+\}", digest):
        assert words in after


def test_a_digest_fills_the_grants_wechat_template() -> None:
    """WeChat sends a digest with the voucher.granted template (its sum and first expiry)."""
    from bot.channels.wechat.channel import TEMPLATE_OF
    from bot.channels.wechat.notices import template_data

    digest = notices.gather("voucher.granted", [
        {"vouchers_fen": 196, "expires_at": "2027-02-21T02:00:00", "release_date": "2026-11-23"},
        {"vouchers_fen": 4, "expires_at": "2027-02-22T02:00:00", "release_date": "2026-11-24"},
    ])
    assert TEMPLATE_OF[digest.kind] == "voucher.granted"
    assert template_data(digest) == {"amount1": "¥2.00", "time2": "2027-02-21 10:00"}
