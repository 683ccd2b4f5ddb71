"""Webhook mode: Telegram's secret-token header is required; with it, updates are answered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bot.channels.telegram.app import build_application, halt, launch
from bot.channels.telegram.webhook import MAX_DEPTH, SECRET_HEADER, build_web_app
from bot.config import Settings
from bot.services import Services
from bot.storage.db import BotDatabase
from ledger.principal import Principal
from ledger.service import LedgerService
from ledger_client.inprocess import InProcessLedgerClient
from tests import fuzz_seed
from tests.fake_telegram import FakeTelegram

TOKEN = "123456:WEBHOOK"
SECRET = "s3cret-token_for-tests"
HOOK = "https://bot.example/telegram/hook"


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    await fake.start()
    ledger = await LedgerService.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    db = BotDatabase(f"sqlite:///{tmp_path / 'bot.db'}")
    await db.upgrade()
    settings = Settings(_env_file=None, telegram_token=TOKEN,  # type: ignore[call-arg]
                        telegram_api_url=fake.url, webhook_url=HOOK)
    services = Services(settings, InProcessLedgerClient(ledger, Principal("bot")), db)
    app = build_application(services, TOKEN, api_url=fake.url)
    server = TestServer(build_web_app(app, HOOK, SECRET), host="127.0.0.1")
    async with app:
        await launch(app)
        await server.start_server()
        try:
            yield fake, str(server.make_url("/telegram/hook"))
        finally:
            await server.close()
            await halt(app)
    await db.dispose()
    await ledger.close()
    await fake.close()


def _update(update_id: int, text: str) -> dict[str, object]:
    user = {"id": 77, "is_bot": False, "first_name": "Web", "language_code": "en"}
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1_790_000_000, "text": text, "from": user,
        "chat": {"id": 77, "type": "private"},
        "entities": [{"type": "bot_command", "offset": 0, "length": len(text)}],
    }}


async def test_requests_without_the_secret_are_refused(
    webhook: tuple[FakeTelegram, str]
) -> None:
    fake, url = webhook
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET + "x"}):
            async with http.post(url, json=_update(1, "/help"), headers=headers) as response:
                assert response.status == 403
        async with http.post(url, data=b"not json", headers={SECRET_HEADER: SECRET}) as response:
            assert response.status == 400
    assert fake.sent == []


async def test_updates_with_the_secret_are_answered(webhook: tuple[FakeTelegram, str]) -> None:
    fake, url = webhook
    async with aiohttp.ClientSession() as http, http.post(
        url, json=_update(2, "/help"), headers={SECRET_HEADER: SECRET}
    ) as response:
        assert response.status == 200
    reply = await fake.next_to(77, 0)
    assert reply.text.startswith("Here is what I can do:")


# --- issue 14: bad input is a 4xx and processes nothing ---------------------------------------


async def _raw(url: str, request: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 exchange written by hand, so headers can carry bytes no client would send."""
    parsed = urlparse(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _post(path: str, secret: bytes, body: bytes) -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: bot\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n"
            + SECRET_HEADER.encode() + b": " + secret + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


BAD_BODIES = {
    "a JSON list": b"[]",
    "a list of updates": json.dumps([_update(3, "/help")]).encode(),
    "a string": b'"update"',
    "a number": b"42",
    "null": b"null",
    "true": b"true",
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "nested inside an update": json.dumps({"update_id": 4, "x": "@"}).replace(
        '"@"', "[" * 200 + "]" * 200).encode(),
    "not JSON": b"not json",
    "not UTF-8": b'{"update_id": 5, "message": "\xff\xfe"}',
    "empty": b"",
    "update_id twice": json.dumps(_update(6, "/help"))[:-1].encode() + b', "update_id": 7}',
    "update_id a string": json.dumps({**_update(8, "/help"), "update_id": "8"}).encode(),
    "update_id missing": json.dumps({"message": _update(9, "/help")["message"]}).encode(),
    "message a list": json.dumps({"update_id": 10, "message": []}).encode(),
    "message without chat": json.dumps({"update_id": 11, "message": {"text": "/help"}}).encode(),
}


async def test_bad_secrets_and_bodies_are_refused_and_nothing_is_processed(
    webhook: tuple[FakeTelegram, str]
) -> None:
    fake, url = webhook
    path = urlparse(url).path
    good = json.dumps(_update(12, "/help")).encode()
    problems = []
    for label, secret in [("non-UTF-8 secret", b"\xff\xfe\xfd"),
                          ("secret then Latin-1", SECRET.encode() + b"\xe9"),
                          ("overlong UTF-8", b"\xc0\xaf" + SECRET.encode())]:
        status, _ = await _raw(url, _post(path, secret, good))
        if status != 403:
            problems.append(f"{label}: {status}")
    for label, body in BAD_BODIES.items():
        status, _ = await _raw(url, _post(path, SECRET.encode(), body))
        if status != 400:
            problems.append(f"{label}: {status}")
    status, _ = await _raw(url, _post(path, SECRET.encode(), b"{" + b" " * (2 << 20) + b"}"))
    if status != 413:
        problems.append(f"oversized body: {status}")
    assert not problems, problems
    # Nothing reached the bot: the next good update is the first thing it answers.
    async with aiohttp.ClientSession() as http, http.post(
        url, json=_update(13, "/help"), headers={SECRET_HEADER: SECRET}
    ) as response:
        assert response.status == 200
    reply = await fake.next_to(77, 0)
    assert reply.text.startswith("Here is what I can do:")
    assert len(fake.sent) == 1


async def test_probes_answer_odd_requests_without_a_fault(
    webhook: tuple[FakeTelegram, str]
) -> None:
    _, url = webhook
    base = url.rsplit("/telegram/", 1)[0]
    problems = []
    for label, request in [
        ("non-UTF-8 header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Odd: \xff\xfe\r\n"
                             b"Connection: close\r\n\r\n"),
        ("junk query", b"GET /metrics?%ff%00=%00&a=" + b"9" * 5000 + b" HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: close\r\n\r\n"),
        ("POST to health", b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                           b"Connection: close\r\n\r\n[]"),
        ("DELETE metrics", b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("unknown path", b"GET /%ff%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("GET the webhook", b"GET /telegram/hook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ]:
        status, _ = await _raw(base, request)
        if status >= 500:
            problems.append(f"{label}: {status}")
    assert not problems, problems


# Generated: the same kinds, new values every run (tests/fuzz_seed.py prints the seed).
def _nest(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


REFUSED_BODIES = st.one_of(
    st.one_of(st.lists(st.integers()), st.text(), st.integers(), st.floats(allow_nan=False),
              st.none(), st.booleans()).map(lambda v: json.dumps(v).encode()),
    st.integers(MAX_DEPTH + 1, 200_000).map(_nest),
    st.integers(0, 2**31).map(lambda n: f'{{"update_id": {n}, "update_id": {n + 1}}}'.encode()),
    st.one_of(st.text(max_size=5), st.floats(allow_nan=False), st.none(), st.booleans(),
              st.lists(st.integers(), max_size=2)).map(
        lambda v: json.dumps({"update_id": v, "message": {}}).encode()),
    st.binary(max_size=64).map(lambda b: b'{"update_id": 1, "x": "' + b"\xff" + b + b'"}'),
)
BAD_SECRETS = st.one_of(
    st.binary(min_size=1, max_size=40).filter(lambda b: b.decode("latin-1").isprintable()),
    st.binary(min_size=1, max_size=8).map(lambda b: SECRET.encode() + bytes(x | 0x80 for x in b)),
)


@settings(max_examples=60, deadline=None, database=None, derandomize=False,
          phases=[Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@seed(fuzz_seed.SEED)
@given(body=REFUSED_BODIES, secret=BAD_SECRETS, anything=st.binary(max_size=200))
async def test_generated_bad_input_is_refused(
    webhook: tuple[FakeTelegram, str], body: bytes, secret: bytes, anything: bytes
) -> None:
    fake, url = webhook
    path = urlparse(url).path
    sent_before = len(fake.sent)
    refused, _ = await _raw(url, _post(path, SECRET.encode(), body))
    forbidden, _ = await _raw(url, _post(path, secret, body))
    whatever, _ = await _raw(url, _post(path, SECRET.encode(), anything))
    assert (refused, forbidden) == (400, 403), (fuzz_seed.REPLAY, body[:80], secret)
    assert whatever < 500, (fuzz_seed.REPLAY, anything)
    assert len(fake.sent) == sent_before
