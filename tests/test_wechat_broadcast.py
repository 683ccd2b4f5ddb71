"""Announcements reach WeChat followers as one mass send (issue 10, WECHAT.md rule 5): the
admin composes on Telegram as always and is told BEFORE sending what WeChat followers will get
and how many of the month's 4 mass sends are left; the WeChat sender makes the mass send under
the broadcast's ``clientmsgid`` (a re-run, even after a crash mid-call, sends nothing twice);
WeChat's MASSSENDJOBFINISH report reaches the admin's /broadcasts; beyond 4 a month the mass
send is refused. Fake Bot API and fake WeChat sharing one bot database, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, select, text, update

from bot.channels.wechat import store
from bot.channels.wechat.channel import WeChatChannel
from bot.channels.wechat.notice_sender import WeChatNoticeSender
from bot.outbox.broadcasts import Broadcasts
from bot.outbox.mass_sends import (
    beijing_month,
    mass_dedupe_key,
    mass_reports,
    mass_sends_left,
)
from bot.storage import outbox
from bot.storage.chats import ChatStore, utcnow
from bot.storage.db import BotDatabase, alembic_config
from bot.storage.schema import OutboxMessage, WeChatMassSend
from tests.bot_harness import Harness, running_bot
from tests.conftest import DATABASES
from tests.databases import fresh_database
from tests.test_bot_admin import ADMIN, button, compose, people
from tests.wechat_harness import WeChatRig, bot_database_url, wechat_rig

SENDALL = "/cgi-bin/message/mass/sendall"
TEXT = "Green week: bring your own cup!"


@pytest.fixture(params=DATABASES)
async def both(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Harness, WeChatRig]]:
    async with (
        running_bot(request.param, tmp_path, admin_ids=frozenset({ADMIN})) as h,
        wechat_rig(h.services.settings.database_url) as rig,
    ):
        yield h, rig


def wechat_sender(rig: WeChatRig) -> WeChatNoticeSender:
    return WeChatNoticeSender(
        rig.db, ChatStore(rig.db), WeChatChannel(rig.api, rig.db, {}, lambda n, locale: "")
    )


async def mass_row(rig: WeChatRig, broadcast_id: int) -> OutboxMessage:
    async with rig.db.session() as session:
        row = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.dedupe_key == mass_dedupe_key(broadcast_id))
        )
    assert row is not None
    return row


async def test_an_announcement_reaches_wechat_followers_as_one_mass_send(
    both: tuple[Harness, WeChatRig],
) -> None:
    h, rig = both
    admin = h.person(ADMIN, "Admin", "en")
    await people(h, (5001, "zh-hans"))
    for openid in ("o_w1", "o_w2", "o_gone"):
        await h.services.chats.seen(("wechat", openid), "zh_Hans", None)
        rig.fake.person(openid)
    await h.services.chats.mark_blocked([("wechat", "o_gone")])  # unfollowed
    rig.fake.person("o_gone").following = False

    question = await compose(h, admin, TEXT, "Everyone")
    assert "to 2 people" in question.text  # 5001 and the admin; WeChat is not per person
    assert "WeChat: 2 followers get it as a mass send (4 of 4 left this month)." in question.text
    await h.tap(admin, button(question, "Send"), question)
    await h.settle()
    got = {s.chat_id for s in h.fake.sent if s.method == "sendMessage" and s.text == TEXT}
    assert got == {5001, ADMIN}
    assert (await Broadcasts(h.services.db).recent())[0].state == "sending"  # WeChat's row waits

    sender = wechat_sender(rig)
    assert await sender.drain_once() == 1
    calls = rig.fake.calls_to(SENDALL)
    assert [(c.body["filter"], c.body["clientmsgid"], c.body["text"]) for c in calls] == [
        ({"is_to_all": True}, "gp-bc-1", {"content": TEXT})
    ]
    msg_id = rig.fake.mass_ids["gp-bc-1"]
    await rig.fake.wait_for(
        lambda: any(d.fields.get("MsgID") == msg_id and d.tries for d in rig.fake.deliveries)
    )
    await h.settle()
    report = (await Broadcasts(h.services.db).recent())[0]
    assert report.state == "done" and (report.total, report.sent) == (2, 2)
    assert report.wechat is not None
    assert (report.wechat.msg_id, report.wechat.total, report.wechat.sent) == (msg_id, 2, 2)
    reached = f"WeChat: 2 of 2 followers received it, 0 failed (mass send {msg_id})."
    final = [s for s in h.fake.sent if s.chat_id == ADMIN and s.method == "editMessageText"][-1]
    assert "finished" in final.text and reached in final.text  # the progress message
    listing = await h.ask(admin, "/broadcasts")
    assert reached in listing.text

    # A re-run sends nothing again: after it was recorded sent, and after a crash during the
    # call (state left "sending"), when WeChat answers 45065 with the first msg_id.
    for crashed in (False, True):
        async with rig.db.session() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.dedupe_key == mass_dedupe_key(1))
                .values(state=outbox.PENDING)
            )
            if crashed:
                await session.execute(update(WeChatMassSend).values(state="sending"))
        assert await sender.drain_once() == 1
        assert (await mass_row(rig, 1)).state == outbox.SENT
    assert [c.errcode for c in rig.fake.calls_to(SENDALL, errcode=None)] == [0, 45065]
    assert rig.fake.mass_texts == [TEXT]
    assert (await Broadcasts(h.services.db).progress(1)).wechat.msg_id == msg_id  # type: ignore[union-attr]


async def test_beyond_four_a_month_the_admin_is_told_first_and_the_mass_send_refused(
    both: tuple[Harness, WeChatRig],
) -> None:
    h, rig = both
    admin = h.person(ADMIN, "Admin", "en")
    await h.ask(admin, "/start")
    await h.services.chats.seen(("wechat", "o_w1"), "zh_Hans", None)
    rig.fake.person("o_w1")

    english = await compose(h, admin, "Only for English readers", "English")
    assert "WeChat followers get announcements to everyone only" in english.text
    await h.tap(admin, button(english, "Cancel"), english)

    for n in range(4):  # this month's four, made earlier
        assert await store.begin_mass_send(rig.db, f"earlier-{n}") is None
        await store.finish_mass_send(rig.db, f"earlier-{n}", msg_id=n + 1, error=None)
    question = await compose(h, admin, TEXT, "Everyone")
    assert "WeChat: this month's 4 mass sends are used, so WeChat followers will not get this" in (
        question.text
    )
    await h.tap(admin, button(question, "Send"), question)
    await h.settle()
    assert await wechat_sender(rig).drain_once() == 1
    assert not rig.fake.calls_to(SENDALL, errcode=None)
    assert (await mass_row(rig, 1)).state == outbox.FAILED
    await h.settle()
    report = (await Broadcasts(h.services.db).recent())[0]
    assert report.state == "done" and report.wechat is not None
    assert report.wechat.refused_for_month
    listing = await h.ask(admin, "/broadcasts")
    assert "WeChat: refused, this month's 4 mass sends are used." in listing.text


def _to_0003_with_a_mass_send(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "0003_wechat")
    connection.execute(
        text("INSERT INTO wechat_mass_sends (client_msg_id, month, state, msg_id, created_at)"
             " VALUES ('by-hand-1', :m, 'sent', 77, :t)"),
        {"m": beijing_month(), "t": utcnow()},
    )


@pytest.mark.parametrize("kind", DATABASES)
async def test_migration_0006_keeps_earlier_mass_sends_in_the_month(
    kind: str, tmp_path: Path
) -> None:
    """A mass send made before 0006 still counts against the month and has no report."""
    async with fresh_database(kind, tmp_path) as url:
        db = BotDatabase(url)
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(_to_0003_with_a_mass_send)
            await db.upgrade()
            assert await mass_sends_left(db) == 3
            assert await store.record_mass_result(db, 77, {"Status": "send success",
                                                           "SentCount": "5"})
            async with db.session() as session:
                row = await session.get(WeChatMassSend, "by-hand-1")
            assert row is not None and (row.broadcast_id, row.sent_count) == (None, 5)
        finally:
            await db.dispose()


async def test_a_per_person_announcement_row_on_wechat_is_skipped_not_failed(
    both: tuple[Harness, WeChatRig],
) -> None:
    """Rows enqueued per WeChat person before mass sends (or by hand) are not the sender's
    failures: WeChat followers get announcements by mass send."""
    _h, rig = both
    await ChatStore(rig.db).seen(("wechat", "o_w1"), "zh_Hans", None)
    async with rig.db.session() as session:
        await outbox.enqueue(session, [outbox.Outgoing(
            "wechat", "o_w1", "sendMessage", {}, "broadcast", "bc:9:wechat:o_w1",
            outbox.BULK, 9)])
    assert await wechat_sender(rig).drain_once() == 1
    async with rig.db.session() as session:
        state = await session.scalar(
            select(OutboxMessage.state).where(OutboxMessage.dedupe_key == "bc:9:wechat:o_w1"))
    assert state == outbox.SKIPPED
    assert not rig.fake.calls_to(SENDALL, errcode=None)


@pytest.mark.parametrize("kind", DATABASES)
async def test_a_report_that_comes_before_the_send_knows_its_msg_id_is_kept(
    kind: str, tmp_path: Path
) -> None:
    """Found by the test above now and then: WeChat's MASSSENDJOBFINISH raced the sendall's own
    answer, and the report, matched by a msg_id not yet stored, was lost."""
    async with bot_database_url(kind, tmp_path) as url:
        db = BotDatabase(url)
        try:
            await db.upgrade()
            assert await store.begin_mass_send(db, "gp-bc-5", broadcast_id=5) is None
            early = {"Status": "send success", "TotalCount": "3", "SentCount": "3",
                     "ErrorCount": "0"}
            assert not await store.record_mass_result(db, 999, early)  # the send's call is out
            await store.finish_mass_send(db, "gp-bc-5", msg_id=999, error=None)
            report = (await mass_reports(db, [5]))[5]
            assert (report.msg_id, report.total, report.sent, report.errors) == (999, 3, 3, 0)
            assert await mass_sends_left(db) == 3  # the report's own row counts for nothing
        finally:
            await db.dispose()
