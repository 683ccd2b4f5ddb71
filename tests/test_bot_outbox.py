"""The outbox sender against the fake Bot API: pace, flood control, blocked chats, network
failures, refusals, recovery after a crash, one sender per deployment, and the hooks broadcasts
will use — on SQLite and PostgreSQL.

The pacing classes are checked on their own with made-up times.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot

from bot.channels.telegram.http import AiohttpRequest
from bot.chat.i18n import translator
from bot.chat.replies import Notice
from bot.outbox import notices
from bot.outbox.pacing import ChatLanes, SendWindow
from bot.outbox.sender import Content, OutboxSender, SenderTuning
from bot.storage import outbox
from bot.storage.chats import ChatStore
from bot.storage.db import BotDatabase
from bot.storage.locks import sender_lock
from bot.storage.outbox import BULK, Claimed, Outcome, Outgoing
from bot.storage.schema import OutboxMessage
from tests.conftest import DATABASES
from tests.databases import fresh_database
from tests.fake_telegram import FakeTelegram


def tg(chat_id: int) -> tuple[str, str]:
    """A Telegram chat's key in the bot's tables."""
    return "telegram", str(chat_id)


TOKEN = "123456:OUTBOX-TEST"
FAST = SenderTuning(flush_every=0.02, idle_poll=0.05, retry_base=0.01, retry_cap=0.05,
                    lock_retry=0.05)


def tuned(**changes: Any) -> SenderTuning:
    values = {**FAST.__dict__, **changes}
    return SenderTuning(**values)


@dataclass
class Rig:
    """A bot database, the fake Bot API and a PTB bot for it: what a sender needs."""

    fake: FakeTelegram
    db: BotDatabase
    chats: ChatStore
    bot: Bot

    def sender(self, rate_overall: float = 10_000, rate_per_chat: float = 1_000,
               tuning: SenderTuning = FAST, **kwargs: Any) -> OutboxSender:
        return OutboxSender(self.db, self.chats, self.bot, rate_overall=rate_overall,
                            rate_per_chat=rate_per_chat, tuning=tuning, **kwargs)

    async def put(self, *messages: Outgoing) -> None:
        async with self.db.session() as session:
            await outbox.enqueue(session, list(messages))

    async def rows(self) -> list[OutboxMessage]:
        async with self.db.session() as session:
            found = await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            return list(found.all())


def text(chat_id: int, body: str, **fields: Any) -> Outgoing:
    return Outgoing(*tg(chat_id), "sendMessage", {"text": body}, "notice", **fields)


@pytest.fixture(params=DATABASES)
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    fake = FakeTelegram()
    await fake.start()
    async with fresh_database(request.param, tmp_path) as url:
        db = BotDatabase(url)
        await db.upgrade()
        http = AiohttpRequest()
        await http.initialize()
        bot = Bot(TOKEN, base_url=f"{fake.url}/bot", request=http, get_updates_request=http)
        try:
            yield Rig(fake, db, ChatStore(db), bot)
        finally:
            await http.shutdown()
            await db.dispose()
            await fake.close()


@asynccontextmanager
async def running(sender: OutboxSender) -> AsyncIterator[OutboxSender]:
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        await sender.stop()
        await asyncio.wait_for(task, 30)


# --- sending and recording --------------------------------------------------------------------


async def test_sends_everything_due_most_urgent_first_and_records_it(rig: Rig) -> None:
    await rig.put(*[Outgoing(*tg(500 + n), "sendMessage", {"text": f"bulk {n}"}, "broadcast",
                             priority=BULK) for n in range(5)])
    await rig.put(text(600, "your vouchers", dedupe_key="event:1"))
    await rig.put(text(600, "the same event again", dedupe_key="event:1"))  # a duplicate
    async with running(rig.sender(tuning=tuned(max_in_flight=1))) as sender:
        await sender.settled()
    assert [s.text for s in rig.fake.sent] == ["your vouchers"] + [f"bulk {n}" for n in range(5)]
    rows = await rig.rows()
    assert [r.state for r in rows] == ["sent"] * 6
    assert all(r.sent_at is not None and r.attempts == 0 for r in rows)


async def test_when_not_all_can_go_receipts_go_first_then_expiring_then_digests(
    rig: Rig,
) -> None:
    """Issue 12's order, for Telegram's rate and WeChat's daily quota alike (both claim by
    priority): rows enqueued least urgent first come out receipts, expiry warnings, digests,
    announcements; Telegram's are neutral notices rendered in the chat's language when sent."""
    await rig.chats.seen(tg(600), "en", None)
    kinds = [
        (BULK, None),
        (outbox.DIGEST, Notice("voucher.digest", {"grants": 2, "vouchers_fen": 300,
                                                  "since": "2026-11-23"})),
        (outbox.EXPIRING, Notice("voucher.expiring", {"vouchers_fen": 12,
                                                      "expires_at": "2027-02-20T02:00:00"})),
        (outbox.NOTICE, Notice("points.earned", {"points": 5, "amount_fen": 100,
                                                 "merchant_name": "Tea"})),
    ]
    for channel, address in (tg(600), ("wechat", "o_600")):
        await rig.put(*[
            Outgoing(channel, address, "sendMessage", {"text": "announcement"}, "broadcast",
                     priority=priority) if notice is None else
            Outgoing(channel, address, "notice", notices.as_payload(notice), "notice",
                     priority=priority)
            for priority, notice in kinds
        ])
    async with rig.db.session() as session:  # a quota with room for two today
        first = await outbox.claim(session, 2, channel="wechat")
    assert [r.priority for r in first] == [outbox.NOTICE, outbox.EXPIRING]
    async with running(rig.sender(tuning=tuned(max_in_flight=1, batch=1))) as sender:
        await sender.settled()
    t = translator("en")
    assert [s.text for s in rig.fake.sent] == [
        notices.notice_text(n, t) for _p, n in reversed(kinds) if n is not None
    ] + ["announcement"]


async def test_retry_after_pauses_all_sending_and_loses_nothing(rig: Rig) -> None:
    rig.fake.misbehave.too_many = 2
    rig.fake.misbehave.retry_after = 1
    await rig.put(*[text(700 + n, f"notice {n}") for n in range(3)])
    async with running(rig.sender(tuning=tuned(max_in_flight=1))) as sender:
        await sender.settled()
        assert sender.stats.throttled == 2
    attempts = rig.fake.attempts
    assert [a.status for a in attempts] == [429, 429, 200, 200, 200]
    for refused, following in itertools.pairwise(attempts):
        if refused.status == 429:  # nothing at all was sent during the pause Telegram asked for
            assert following.at - refused.at >= 1.0
    assert sorted(s.text for s in rig.fake.sent) == [f"notice {n}" for n in range(3)]
    # Flood control is not the message's fault: no attempt is counted against it.
    assert [(r.state, r.attempts) for r in await rig.rows()] == [("sent", 0)] * 3


async def test_overall_rate_never_trips_a_strict_limit(rig: Rig) -> None:
    rig.fake.misbehave.rate_limit = 8  # a strict sliding second, like the bench's
    await rig.put(*[text(800 + n, f"n{n}") for n in range(20)])
    async with running(rig.sender(rate_overall=8)) as sender:
        await sender.settled()
    assert len(rig.fake.sent) == 20
    assert [a.status for a in rig.fake.attempts] == [200] * 20


async def test_one_chat_is_spaced_at_its_own_rate(rig: Rig) -> None:
    rig.fake.misbehave.per_chat_rate = 10
    await rig.put(*[text(chat, f"{chat}:{n}") for n in range(5) for chat in (901, 902)])
    async with running(rig.sender(rate_per_chat=10)) as sender:
        await sender.settled()
    assert [a.status for a in rig.fake.attempts] == [200] * 10
    for chat in (901, 902):  # each chat's messages in order, at most 10 a second
        sent = rig.fake.to(chat)
        assert [s.text for s in sent] == [f"{chat}:{n}" for n in range(5)]
        assert all(b.at - a.at >= 0.1 for a, b in itertools.pairwise(sent))


async def test_network_failures_are_retried_with_backoff_then_delivered(rig: Rig) -> None:
    rig.fake.misbehave.network_failures = 3
    await rig.put(text(1000, "your vouchers"))
    async with running(rig.sender(tuning=tuned(max_in_flight=1))) as sender:
        await rig.fake.wait_for(lambda sent: len(sent) == 1)
        await sender.settled()
        assert sender.stats.retried == 3
    assert [a.status for a in rig.fake.attempts] == [502, 502, 502, 200]
    [row] = await rig.rows()
    assert (row.state, row.attempts) == ("sent", 3)


async def test_network_failures_give_up_after_the_last_attempt(rig: Rig) -> None:
    rig.fake.misbehave.network_failures = 100
    await rig.put(text(1001, "never arrives"))
    async with running(rig.sender(tuning=tuned(max_attempts=3))) as sender:
        await rig.fake.wait_for(lambda _sent: len(rig.fake.attempts) == 3)
        await sender.settled()
    [row] = await rig.rows()
    assert (row.state, row.attempts) == ("failed", 3)
    assert row.last_error is not None and "Bad Gateway" in row.last_error
    assert len(rig.fake.attempts) == 3


async def test_a_refused_message_fails_at_once(rig: Rig) -> None:
    rig.fake.misbehave.missing_chats = {1002}
    await rig.put(
        text(1002, "to nobody"), Outgoing(*tg(1003), "sendVoice", {"voice": "x"}, "notice")
    )
    async with running(rig.sender()) as sender:
        await sender.settled()
    rows = await rig.rows()
    assert [(r.state, r.attempts) for r in rows] == [("failed", 1), ("failed", 1)]
    assert rows[0].last_error is not None and "chat not found" in rows[0].last_error.lower()
    assert rows[1].last_error is not None and "sendVoice" in rows[1].last_error
    assert len(rig.fake.attempts) == 1  # the malformed row never went out


async def test_a_chat_that_blocked_the_bot_gets_nothing_until_it_writes_again(rig: Rig) -> None:
    await rig.chats.seen(tg(1100), "en", "Ann")
    rig.fake.misbehave.blocked = {1100}
    await rig.put(*[text(1100, f"n{n}") for n in range(3)], text(1101, "other chat"))
    async with running(rig.sender()) as sender:
        await sender.settled()
        # One refusal is enough: the rows queued behind it are not even tried.
        assert [a.chat_id for a in rig.fake.attempts if a.status == 403] == [1100]
        assert [r.state for r in await rig.rows()] == ["blocked"] * 3 + ["sent"]
        profile = await rig.chats.get(tg(1100))
        assert profile is not None and profile.blocked

        await rig.put(text(1100, "later"))  # still blocked: skipped without a request
        await sender.settled()
        assert len(rig.fake.attempts) == 2 and (await rig.rows())[-1].state == "blocked"

        rig.fake.misbehave.blocked = set()
        await rig.chats.seen(tg(1100), "en", "Ann")  # the person wrote to the bot again
        await rig.put(text(1100, "welcome back"))
        await sender.settled()
    assert [s.text for s in rig.fake.to(1100)] == ["welcome back"]


# --- crash recovery and the one-sender lock ---------------------------------------------------


async def test_rows_left_sending_by_a_dead_sender_go_out_again(rig: Rig) -> None:
    await rig.put(*[text(1200 + n, f"n{n}") for n in range(4)])
    async with rig.db.session() as session:  # a sender claimed them, then died
        assert len(await outbox.claim(session, 10)) == 4
    async with running(rig.sender()) as sender:
        await sender.settled()
        assert sender.stats.recovered == 4
    assert sorted(s.text for s in rig.fake.sent) == [f"n{n}" for n in range(4)]
    assert {r.state for r in await rig.rows()} == {"sent"}


async def test_a_clean_stop_gives_unsent_rows_back_and_repeats_nothing(rig: Rig) -> None:
    await rig.put(*[text(1250 + n, f"n{n}") for n in range(40)])
    async with running(rig.sender(rate_overall=20)):
        await rig.fake.wait_for(lambda sent: len(sent) >= 10)
    states = {r.state for r in await rig.rows()}
    assert states == {"sent", "pending"}  # nothing left ``sending``
    async with running(rig.sender()) as sender:
        await sender.settled()
        assert sender.stats.recovered == 0
    assert sorted(s.text for s in rig.fake.sent) == sorted(f"n{n}" for n in range(40))


async def test_only_the_lock_holder_sends_and_a_standby_takes_over(rig: Rig) -> None:
    first, second = rig.sender(), rig.sender()
    async with running(first):
        await first.settled()
        async with running(second):
            await second.settled()  # returns at once: it is on standby
            assert first.active and not second.active
            await rig.put(*[text(1300 + n, f"a{n}") for n in range(5)])
            await first.settled()
            await first.stop()
            await rig.put(*[text(1400 + n, f"b{n}") for n in range(5)])
            await rig.fake.wait_for(lambda sent: len(sent) == 10)
            assert second.active
    assert sorted(s.text for s in rig.fake.sent) == sorted(
        [f"a{n}" for n in range(5)] + [f"b{n}" for n in range(5)]
    )


async def test_the_lock_is_exclusive(rig: Rig) -> None:
    one, two = sender_lock(rig.db), sender_lock(rig.db)
    assert await one.acquire()
    assert not await two.acquire()
    assert await one.alive()
    await one.release()
    assert await two.acquire()
    await two.release()


# --- what broadcasts will plug into ---------------------------------------------------------


async def test_resolvers_fill_in_content_and_outcomes_are_seen_as_they_are_recorded(
    rig: Rig,
) -> None:
    async def resolve(rows: Sequence[Claimed]) -> dict[int, Content | None]:
        return {
            r.id: ("sendMessage", {"text": f"announcement {r.broadcast_id}"})
            if r.broadcast_id == 7 else None  # broadcast 8 was cancelled
            for r in rows
        }

    seen: list[tuple[int | None, str]] = []

    async def on_outcomes(session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        assert session.in_transaction()
        seen.extend((o.row.broadcast_id, o.state) for o in outcomes)

    rig.fake.misbehave.blocked = {1502}
    await rig.put(*[
        Outgoing(*tg(1500 + n), "sendMessage", {}, "broadcast", f"b:{b}:{n}", BULK, b)
        for b in (7, 8) for n in range(3)
    ])
    sender = rig.sender(resolvers={"broadcast": resolve}, on_outcomes=on_outcomes)
    async with running(sender):
        await sender.settled()
    assert sorted(s.text for s in rig.fake.sent) == ["announcement 7"] * 2
    assert sorted(seen) == sorted([(7, "sent"), (7, "sent"), (7, "blocked")] + [(8, "skipped")] * 3)
    async with rig.db.session() as session:
        assert await outbox.counts(session, 7) == {"sent": 2, "blocked": 1}
        assert await outbox.counts(session, 8) == {"skipped": 3}


# --- pacing, with made-up times ---------------------------------------------------------------


def test_send_window_counts_each_send_until_a_period_after_its_answer() -> None:
    window = SendWindow(3)
    assert (window.capacity, window.period) == (3, 1.0)
    for _ in range(3):
        assert window.next_free(0.0) == 0.0
        window.start()
    assert window.next_free(0.0) == math.inf  # all three in flight
    window.finish(0.2)
    window.finish(0.1)
    assert window.next_free(0.5) == 1.1  # the earliest answer plus a period
    assert window.next_free(1.1) == 1.1
    window.start()  # a fourth send, at 1.1
    assert window.next_free(1.15) == 1.2  # two in flight, one slot held until 1.2
    slow = SendWindow(0.5)
    assert (slow.capacity, slow.period) == (1, 2.0)


def test_chat_lanes_space_one_chat_and_let_others_pass() -> None:
    lanes: ChatLanes[str] = ChatLanes(rate_per_chat=2)  # 0.5 s apart
    assert lanes.offer(("t", "1"), "a1", 0.0)
    assert not lanes.offer(("t", "1"), "a2", 0.0)  # chat 1 is busy
    assert lanes.offer(("t", "2"), "b1", 0.0)  # another chat is not held up
    assert lanes.due(10.0) == []  # a2 waits for a1's answer
    lanes.finish(("t", "1"), 0.1)
    assert lanes.next_due() == 0.6
    assert lanes.due(0.5) == []
    assert lanes.due(0.6) == ["a2"]
    assert not lanes.offer(("t", "1"), "a3", 0.7)
    lanes.finish(("t", "1"), 0.8)
    assert lanes.drop(("t", "1")) == ["a3"] and lanes.parked == 0
    lanes.finish(("t", "2"), 0.1)
    assert lanes.offer(("t", "2"), "b2", 0.6) and lanes.drain() == []


async def test_each_channel_has_its_own_sender_rows_and_lock(rig: Rig) -> None:
    """The Telegram sender neither sends nor recovers a WeChat chat's rows (issue 10: one
    sender per channel), and the two channels' locks do not exclude each other."""
    wechat = Outgoing("wechat", "o_zoe", "notice", {"kind": "points.earned"}, "notice")
    await rig.put(wechat, text(1600, "telegram news"))
    async with rig.db.session() as session:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.channel == "wechat")
            .values(state=outbox.SENDING, claimed_at=dt.datetime(2026, 1, 1))
        )
    async with running(rig.sender()) as sender:
        await sender.settled()
    assert [(r.channel, r.address, r.state) for r in await rig.rows()] == [
        ("wechat", "o_zoe", "sending"),  # another sender's, in flight: left alone
        ("telegram", "1600", "sent"),
    ]
    assert [s.chat_id for s in rig.fake.sent] == [1600]
    telegram, other = sender_lock(rig.db, "telegram"), sender_lock(rig.db, "wechat")
    try:
        assert await telegram.acquire() and await other.acquire()
        assert not await sender_lock(rig.db, "wechat").acquire()
    finally:
        await telegram.release()
        await other.release()
