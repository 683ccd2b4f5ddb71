"""The bot's operability surface, through the running bot: ``/metrics`` and ``/healthz`` over
real HTTP on its web port (polling and webhook mode), log lines tied to their update and to the
ledger's lines for it, and no secret in any log line even at DEBUG.

Counters are compared before and after, and must move by exactly what the test did.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
import zxingcpp
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select, update
from telegram.ext import ExtBot

from bot.channels.telegram.webhook import SECRET_HEADER
from bot.config import Settings, SettingsError, load_settings
from bot.ops.logs import Redactor, begin_update, configure_logging
from bot.ops.metrics import MeteredRateLimiter, outbox_depth
from bot.outbox.broadcasts import Broadcasts
from bot.outbox.sender import SenderTuning
from bot.runtime import serve_web
from bot.storage import outbox
from bot.storage.chats import utcnow
from bot.storage.outbox import Outgoing
from bot.storage.schema import Broadcast, OutboxMessage
from ledger.observability import RequestIdFilter
from tests.bot_harness import TOKEN, Harness, running_bot, tg
from tests.conftest import DATABASES
from tests.fake_telegram import FakeTelegram, Person

FAST = SenderTuning(flush_every=0.02, idle_poll=0.05, retry_base=0.01, retry_cap=0.05,
                    lock_retry=0.05)
WEBHOOK_SECRET = "webhook-secret_for-observability-tests"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

QR = zxingcpp.BarcodeFormat.QRCode  # the redemption picture also carries a Code 128


@dataclass
class Watched:
    """A running bot and the URL of its web port."""

    h: Harness
    url: str

    async def scrape(self) -> Samples:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = await response.text()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }

    async def healthz(self) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as response:
            return response.status, await response.json()


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@asynccontextmanager
async def watched_bot(kind: str, tmp_path: Path, **options: Any) -> AsyncIterator[Watched]:
    """The harness's bot (polling the fake Bot API) with its web port on a free local port."""
    async with running_bot(kind, tmp_path, sender_tuning=FAST, **options) as h, serve_web(
        h.app, h.services.settings, host="127.0.0.1", port=0
    ) as urls:
        yield Watched(h, urls[0])


@pytest.fixture(params=DATABASES)
async def watched(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Watched]:
    async with watched_bot(request.param, tmp_path) as w:
        yield w


async def said(h: Harness, person: Person, text: str) -> int:
    """Say ``text`` and wait until the application is done with it; returns the update id."""
    update_id = person.says(text)
    await h.handled(update_id)
    return update_id


async def enqueue(h: Harness, *messages: Outgoing) -> None:
    async with h.services.db.session() as session:
        await outbox.enqueue(session, list(messages))
    h.background.sender.wake()


def notice(chat_id: int, text: str) -> Outgoing:
    return Outgoing(*tg(chat_id), "sendMessage", {"text": text}, "notice")


# --- metrics ----------------------------------------------------------------------------------


async def test_updates_are_counted_once_each_by_handler_and_outcome(watched: Watched) -> None:
    h = watched.h
    person = h.person(601, "Ada", "en")
    await said(h, person, "/start")
    before = await watched.scrape()
    for _ in range(3):
        await said(h, person, "/help")
    await h.handled(person.says_in_group("/help"))  # answered with a pointer, then dropped
    await h.handled(person.edits(1, "an edit"))  # dropped in silence
    after = await watched.scrape()

    handled = "greenpoints_bot_updates_total"
    assert delta(before, after, handled, kind="message", handler="start.help_command",
                 outcome="ok") == 3
    assert delta(before, after, handled, kind="message", handler="-", outcome="ignored") == 1
    assert delta(before, after, handled, kind="edited_message", handler="-",
                 outcome="ignored") == 1
    assert delta(before, after, "greenpoints_bot_updates_received_total", kind="message") == 4
    assert delta(before, after, "greenpoints_bot_updates_received_total",
                 kind="edited_message") == 1
    assert delta(before, after, "greenpoints_bot_update_seconds_count",
                 handler="start.help_command") == 3
    assert delta(before, after, "greenpoints_bot_update_seconds_bucket",
                 handler="start.help_command", le="+Inf") == 3
    total = sum(v for (name, _), v in after.items() if name == handled)
    assert total == sum(v for (name, _), v in before.items() if name == handled) + 5


async def test_a_reply_telegram_refused_counts_as_a_reply_wait(watched: Watched) -> None:
    """The application's own limiter (replies, not the outbox) is the metered one."""
    h = watched.h
    person = h.person(602, "Bea", "en")
    await said(h, person, "/start")
    before = await watched.scrape()
    h.fake.misbehave.too_many = 1
    reply = await h.ask(person, "/help")  # refused once with 429, sent after Telegram's wait
    assert "/balance" in reply.text
    after = await watched.scrape()
    waits = "greenpoints_bot_rate_limit_waits_total"
    assert delta(before, after, waits, path="reply", reason="telegram") == 1


async def test_sends_and_rate_limit_waits_are_counted_by_outcome(watched: Watched) -> None:
    h = watched.h
    await h.settle()
    before = await watched.scrape()
    # One 429 (the first send that is not to a blocked chat), one chat that blocked the bot,
    # and three notices to one chat, of which the second and third wait for its lane.
    h.fake.misbehave.too_many = 1
    h.fake.misbehave.blocked = {702}
    await enqueue(h, notice(701, "one"), notice(701, "two"), notice(701, "three"),
                  notice(702, "blocked"))
    await h.settle()
    after = await watched.scrape()

    sends = "greenpoints_bot_sends_total"
    assert delta(before, after, sends, outcome="sent") == 3
    assert delta(before, after, sends, outcome="blocked") == 1
    assert delta(before, after, sends, outcome="throttled") == 1
    assert delta(before, after, sends, outcome="failed") == 0
    waits = "greenpoints_bot_rate_limit_waits_total"
    seconds = "greenpoints_bot_rate_limit_wait_seconds_total"
    assert delta(before, after, waits, path="outbox", reason="telegram") == 1
    assert delta(before, after, seconds, path="outbox", reason="telegram") == 1.0  # retry_after
    assert delta(before, after, waits, path="outbox", reason="chat") == 2
    assert delta(before, after, seconds, path="outbox", reason="chat") > 0
    assert delta(before, after, "greenpoints_bot_send_request_seconds_count") == 5
    assert value(after, "greenpoints_bot_sender_active") == 1
    assert [t.text for t in h.fake.to(701)] == ["one", "two", "three"]

    # A network failure: the row goes back to wait, then out.
    h.fake.misbehave.network_failures = 1
    await enqueue(h, notice(703, "later"))
    await h.fake.wait_for(lambda sent: any(s.chat_id == 703 for s in sent))
    await h.settle()
    again = await watched.scrape()
    assert delta(after, again, sends, outcome="retry") == 1
    assert delta(after, again, sends, outcome="sent") == 1


async def test_outbox_depth_reflects_waiting_rows(watched: Watched) -> None:
    h = watched.h
    await h.settle()
    background = h.background
    await background.sender.stop()  # nothing leaves the outbox from here on
    await asyncio.wait([t for t in background.tasks if t.get_name() == "outbox-sender"])
    empty = await watched.scrape()
    assert value(empty, "greenpoints_bot_outbox_depth", priority="notice") == 0
    assert value(empty, "greenpoints_bot_outbox_depth", priority="bulk") == 0
    assert value(empty, "greenpoints_bot_sender_active") == 0

    await enqueue(h, *(notice(800 + n, f"notice {n}") for n in range(5)))
    for chat_id in range(900, 907):
        await h.services.chats.seen(tg(chat_id), "en", None)
    await h.services.chats.mark_blocked([tg(906)])
    broadcasts = Broadcasts(h.services.db)
    broadcast_id = await broadcasts.create(tg(42), "hello", None, "all")
    await broadcasts.enqueue_all(broadcast_id)
    queued = await watched.scrape()
    assert value(queued, "greenpoints_bot_outbox_depth", priority="notice") == 5
    # Seven in the audience, one of whom blocked the bot: six rows wait.
    assert value(queued, "greenpoints_bot_outbox_depth", priority="bulk") == 6
    assert value(queued, "greenpoints_bot_outbox_oldest_seconds", priority="notice") >= 0

    # Outcomes recorded against the broadcast (as the sender would) leave the depth at once.
    async with h.services.db.session() as session:
        rows = (await session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.broadcast_id == broadcast_id).limit(2)
        )).all()
        await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(rows))
                              .values(state=outbox.SENT, sent_at=utcnow()))
        await session.execute(update(Broadcast).where(Broadcast.id == broadcast_id)
                              .values(sent=Broadcast.sent + 2))
    assert value(await watched.scrape(), "greenpoints_bot_outbox_depth", priority="bulk") == 4
    # The notice count stops at its cap, however many rows wait.
    capped = await outbox_depth(h.services.db, cap=3)
    assert capped.rows["notice"] == 3


async def test_healthz_answers_503_while_the_bots_database_is_unreachable(
    tmp_path: Path,
) -> None:
    async with watched_bot("sqlite", tmp_path) as w:
        await w.h.settle()
        status, body = await w.healthz()
        assert (status, body) == (200, {"status": "ok", "database": "ok", "ledger": "ok",
                                        "sender": "active"})
        db = w.h.services.db
        path = Path(db.url.database or "")
        moved = [(p, p.with_name(p.name + ".away"))
                 for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
        for src, dst in moved:
            os.replace(src, dst)
        os.mkdir(path)  # what was the database file cannot be opened as one now
        await db.engine.dispose()
        try:
            status, body = await w.healthz()
            assert status == 503
            assert body["status"] == "unavailable" and body["database"] == "unreachable"
            assert body["ledger"] == "ok"
            samples = await w.scrape()  # still answers, without the depth it could not read
            assert ("greenpoints_bot_outbox_depth", (("priority", "notice"),)) not in samples
            assert value(samples, "greenpoints_bot_outbox_depth_errors_total") >= 1
        finally:
            os.rmdir(path)
            for src, dst in moved:
                os.replace(dst, src)
            await db.engine.dispose()
        status, body = await w.healthz()
        assert status == 200 and body["database"] == "ok"


async def test_healthz_reports_the_ledger_without_failing_on_it(tmp_path: Path) -> None:
    async with watched_bot("sqlite", tmp_path, ledger="http") as w:
        h = w.h
        person = h.person(611, "Bo", "en")
        await said(h, person, "/start")
        await h.stop_ledger()
        status, body = await w.healthz()
        assert status == 200 and body["database"] == "ok" and body["ledger"] == "unreachable"
        before = await w.scrape()
        reply = await h.ask(person, "/balance")
        assert "not answering" in reply.text
        after = await w.scrape()
        assert delta(before, after, "greenpoints_bot_updates_total", kind="message",
                     handler="balance.show_balance", outcome="error") == 1
        await h.restart_ledger()
        status, body = await w.healthz()
        assert status == 200 and body["ledger"] == "ok"


async def test_webhook_server_also_serves_the_probes(tmp_path: Path) -> None:
    async with running_bot("sqlite", tmp_path, sender_tuning=FAST) as h:
        settings = h.services.settings.model_copy(update={
            "webhook_url": "https://bot.example/telegram/hook",
            "webhook_secret": SecretStr(WEBHOOK_SECRET),
        })
        async with serve_web(h.app, settings, host="127.0.0.1", port=0) as urls:
            w = Watched(h, urls[0])
            assert any(
                method == "setWebhook" and params.get("url") == settings.webhook_url
                and params.get("secret_token") == WEBHOOK_SECRET
                for method, params in h.fake.calls
            )
            before = await w.scrape()
            async with aiohttp.ClientSession() as http, http.post(
                f"{w.url}/telegram/hook", json=_webhook_update(5001, 621, "/help"),
                headers={SECRET_HEADER: WEBHOOK_SECRET},
            ) as response:
                assert response.status == 200
            await h.handled(5001)
            after = await w.scrape()
            assert delta(before, after, "greenpoints_bot_updates_total", kind="message",
                         handler="start.help_command", outcome="ok") == 1
            assert (await w.healthz())[0] == 200


async def test_the_web_port_can_be_turned_off(tmp_path: Path) -> None:
    async with running_bot("sqlite", tmp_path, web_port=0) as h, serve_web(
        h.app, h.services.settings
    ) as urls:
        assert urls == []


async def test_reply_limiter_counts_telegrams_429s_and_its_own_waits() -> None:
    fake = FakeTelegram()
    await fake.start()
    limiter = MeteredRateLimiter(overall_max_rate=1000, overall_time_period=1, max_retries=2)
    bot: ExtBot[int] = ExtBot(TOKEN, base_url=f"{fake.url}/bot", rate_limiter=limiter)
    try:
        async with bot:
            fake.misbehave.too_many = 1
            await bot.send_message(631, "hello")  # refused once, sent after Telegram's wait
    finally:
        await fake.close()
    assert [m.text for m in fake.to(631)] == ["hello"]
    assert limiter.pacing.throttled == 1
    assert limiter.pacing.throttled_seconds == 1.0


# --- logs -------------------------------------------------------------------------------------


@contextmanager
def captured_logs(level: int, secrets: list[str]) -> Iterator[io.StringIO]:
    """The bot's production logging set-up (JSON lines) writing into a buffer; the root logger
    is given back as it was afterwards. The ledger runs in this process too, so its request-id
    filter is added, as its own ``configure_logging`` would in its own process. At DEBUG the
    SQL statements and their parameters are captured too (a pending redemption's code is one).
    """
    root, sql = logging.getLogger(), logging.getLogger("sqlalchemy")
    saved, saved_level, sql_level = root.handlers[:], root.level, sql.level
    buffer = io.StringIO()
    handler = configure_logging(level, json_lines=True, secrets=secrets, stream=buffer)
    handler.addFilter(RequestIdFilter())
    if level <= logging.DEBUG:
        sql.setLevel(logging.DEBUG)  # SQLAlchemy holds its loggers at WARNING unless told
    try:
        yield buffer
    finally:
        root.handlers[:] = saved
        root.setLevel(saved_level)
        sql.setLevel(sql_level)


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


async def staff(h: Harness, user_id: int) -> tuple[Person, str]:
    cashier = h.person(user_id, "Cashier", "en")
    invite = await h.ledger_as("admin").create_staff_invite(h.shop_id)
    reply = await h.ask(cashier, f"/start {invite.code}")
    assert "You are now staff" in reply.text
    return cashier, invite.code


async def test_log_lines_carry_the_update_and_the_ledger_request_id(tmp_path: Path) -> None:
    async with running_bot("sqlite", tmp_path, ledger="http", sender_tuning=FAST) as h:
        cashier, _invite = await staff(h, 641)
        with captured_logs(logging.INFO, [TOKEN]) as buffer:
            before = len(h.fake.sent)
            update_id = cashier.says("1234 5678 9012 3456 7890")  # well-formed, unknown
            await h.handled(update_id)
            await h.fake.next_to(cashier.id, before)
        found = records(buffer)
    ours = [r for r in found if r.get("update_id") == update_id]
    assert any(r["message"].startswith("update handled: message by fallback.anything_else")
               for r in ours)
    # The ledger's own line about the code names the request the bot made for this update.
    ledger_lines = [r for r in found if r["logger"].startswith("ledger.")
                    and "unknown redemption code" in r["message"]]
    assert ledger_lines
    assert all(re.fullmatch(rf"tg-{update_id}-\d+", r["request_id"]) for r in ledger_lines)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in found)


def _webhook_update(update_id: int, user_id: int, text: str) -> dict[str, Any]:
    user = {"id": user_id, "is_bot": False, "first_name": "Web", "language_code": "en"}
    entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"update_id": update_id, "message": {
        "message_id": 1, "date": 1_790_000_000, "text": text, "from": user,
        "chat": {"id": user_id, "type": "private"},
        "entities": entities if text.startswith("/") else [],
    }}


async def test_no_secret_reaches_any_log_line_even_at_debug(tmp_path: Path) -> None:
    phone = "+8613812345678"
    async with running_bot("sqlite", tmp_path, ledger="http", sender_tuning=FAST) as h:
        api_key = h.services.ledger._headers["Authorization"].split()[1]  # type: ignore[attr-defined]
        hook = f"https://bot.example/{TOKEN}/hook"
        settings = h.services.settings.model_copy(update={
            "webhook_url": hook, "webhook_secret": SecretStr(WEBHOOK_SECRET),
        })
        with captured_logs(logging.DEBUG, settings.secrets()) as buffer:
            customer = h.person(651, "Gus", "en")
            await h.ask(customer, "/start")
            photo = await h.ask(customer, "/qr")
            picture = Image.open(io.BytesIO(photo.files["photo"]))
            link = zxingcpp.read_barcodes(picture, formats=QR)[0].text
            payload = parse_qs(urlparse(link).query)["start"][0]
            match = re.search(r"Code: ([\d ]+)", photo.text)
            assert match is not None
            grouped = match.group(1).strip()
            digits = grouped.replace(" ", "")

            cashier, invite = await staff(h, 652)  # the invite's deep link: /start s…
            reply = await h.ask(cashier, grouped)  # the code as typed at the till
            assert "How much is the bill?" in reply.text
            await h.ask(cashier, link)  # and pasted as a link
            await h.ask(cashier, f"/start {payload}")  # and opened as one
            await h.ask(customer, digits)  # a customer typing their own code
            before = len(h.fake.sent)
            await h.handled(customer.sends(contact={
                "phone_number": phone, "first_name": "Gus", "user_id": customer.id}))
            await h.fake.next_to(customer.id, before)

            async with serve_web(h.app, settings, host="127.0.0.1", port=0) as urls:
                before = len(h.fake.sent)
                async with aiohttp.ClientSession() as http, http.post(
                    f"{urls[0]}/{TOKEN}/hook", json=_webhook_update(7001, 653, "/help"),
                    headers={SECRET_HEADER: WEBHOOK_SECRET},
                ) as response:
                    assert response.status == 200
                await h.fake.next_to(653, before)
                await h.handled(7001)
        found = records(buffer)
        raw = buffer.getvalue()

    decoded = "\n".join(json.dumps(r, ensure_ascii=False) for r in found)
    # The capture really was everything at DEBUG: whole updates, Bot API calls, SQL.
    assert any(r["logger"].startswith("telegram") and r["level"] == "DEBUG" for r in found)
    assert any(r["logger"].startswith("sqlalchemy.engine") for r in found)
    assert any("update_id" in r and r["update_id"] == 7001 for r in found)
    forbidden = {
        "the code": digits, "the grouped code": grouped, "the link code": payload,
        "the deep link": link, "the invite": invite, "the bot token": TOKEN,
        "the token's secret half": TOKEN.split(":", 1)[1], "the API key": api_key,
        "the webhook secret": WEBHOOK_SECRET, "the phone number": phone,
        "the phone's digits": phone.lstrip("+"), "the mobile number": phone[3:],
    }
    for what, secret in forbidden.items():
        assert secret not in raw, f"{what} is in the logs"
        assert secret not in decoded, f"{what} is in the logs"


# --- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        ("POST https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe",
         "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "/bot[token]/getMe"),
        ("token 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw alone", "AAHdqTcv", "token "),
        ("code=1234-5678-9012-3456-7890 typed", "5678", "code=1234…"),
        ("full-width １２３４５６７８９０１２３４５６７８９０", "５６７８", "１２３４…"),
        ("{'text': '/start sAbCdEfGhIjKlMnOpQrStUv'}", "sAbCdEfGh", "/start s…"),
        ("https://t.me/Bot?start=rAbCdEfGhIjKl", "rAbCdEf", "?start=r…"),
        ('"data": {"code": "rabcdefghijkl"}', "rabcdefghijkl", '"code": "r…'),
        ("Authorization: Bearer gp_bot_aVeryLongSecretKeyValue123", "aVeryLong", "Bearer …"),
        ("postgresql://bot:hunter2@db/greenpoints", "hunter2", "postgresql://bot:…@db"),
        ("Contact(phone_number='8613812345678', user_id=7)", "13812345678", "user_id=7"),
        ("call me on +86 138 1234 5678", "1234 5678", "call me on [phone]"),
        ("my mobile 13812345678", "13812345678", "my mobile [phone]"),
    ],
)
def test_the_redactor_removes_secrets_and_keeps_the_rest(text: str, gone: str, kept: str) -> None:
    clean = Redactor().redact(text)
    assert gone not in clean and kept in clean


@pytest.mark.parametrize(
    "text",
    [
        "reconnecting after registration failures",
        "update 123456789 from chat 987654321 at 2025-01-15 12:30:45",
        "webhook at https://bot.example/telegram/hook",
        "request tg-123456789-2 took 12.5 ms",
    ],
)
def test_the_redactor_leaves_ordinary_lines_alone(text: str) -> None:
    assert Redactor().redact(text) == text


def test_text_and_json_lines_name_the_update() -> None:
    root = logging.getLogger()
    saved, saved_level = root.handlers[:], root.level
    text_buffer, json_buffer = io.StringIO(), io.StringIO()
    try:
        text_handler = configure_logging(logging.INFO, stream=text_buffer)
        json_handler = configure_logging(logging.INFO, json_lines=True, stream=json_buffer)
        root.handlers[:] = [text_handler, json_handler]  # each call replaces the root's handlers
        log = logging.getLogger("bot.test")

        def handling() -> None:
            begin_update(42)
            log.info("inside")

        contextvars.copy_context().run(handling)
        log.info("outside")
    finally:
        root.handlers[:] = saved
        root.setLevel(saved_level)
    inside, outside = (json.loads(line) for line in json_buffer.getvalue().splitlines())
    assert (inside["update_id"], outside["update_id"]) == (42, None)
    lines = text_buffer.getvalue().splitlines()
    assert lines[0].endswith("bot.test [u42] inside")
    assert lines[1].endswith("bot.test [-] outside")


def test_log_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENPOINTS_LOG_FORMAT", "JSON")
    monkeypatch.setenv("GREENPOINTS_LOG_LEVEL", "debug")
    monkeypatch.setenv("GREENPOINTS_WEB_PORT", "9999")
    settings = load_settings(_env_file=None)
    assert settings.json_logs and settings.log_level == "DEBUG" and settings.web_port == 9999
    assert settings.web_host == "127.0.0.1"
    with pytest.raises(SettingsError, match="GREENPOINTS_LOG_LEVEL"):
        load_settings(_env_file=None, log_level="chatty")
    assert Settings(_env_file=None, log_json=True).json_logs  # type: ignore[call-arg]
