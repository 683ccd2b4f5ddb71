"""Link codes in the bot database (bot.storage.links), on SQLite and PostgreSQL, with the clock
passed in: a code lasts 10 minutes and works once, asking again replaces it, two chats typing
one code at once cannot both have it, and the guessing throttle closes after 5 wrong codes and
opens again when its 15-minute window ends."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage.db import BotDatabase
from bot.storage.links import CODE_TTL, WRONG_MAX, WRONG_WINDOW, LinkStore, digits
from tests.wechat_harness import bot_database_url

T0 = dt.datetime(2026, 11, 29, 8, 0)
TG = ("telegram", "501")


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def links(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LinkStore]:
    async with bot_database_url(request.param, tmp_path) as url:
        db = BotDatabase(url)
        await db.upgrade()
        try:
            yield LinkStore(db)
        finally:
            await db.dispose()


def test_digits_are_read_as_people_type_them() -> None:
    assert digits("1234 5678") == digits("1234-5678") == digits("１２３４５６７８") == "12345678"
    assert digits("1234567") is None and digits("123456789") is None and digits("1234567a") is None


async def test_a_code_lasts_ten_minutes_and_works_once(links: LinkStore) -> None:
    issued = await links.issue(TG, 7, now=T0)
    assert issued.expires_at == T0 + CODE_TTL and len(issued.code) == 8
    late = await links.claim(issued.code, ("wechat", "o_a"), None, now=T0 + CODE_TTL)
    assert late.outcome == "expired"
    fresh = await links.issue(TG, 7, now=T0)
    first = await links.claim(fresh.code, ("wechat", "o_a"), None, now=T0 + dt.timedelta(minutes=9))
    assert (first.outcome, first.member_id, first.issuer) == ("claimed", 7, TG)
    again = await links.claim(fresh.code, ("wechat", "o_a"), None, now=T0)  # a retry: its own
    assert again.outcome == "claimed"
    other = await links.claim(fresh.code, ("wechat", "o_b"), None, now=T0)
    assert other.outcome == "used"
    await links.release(first.code_hash, ("wechat", "o_a"))
    assert (await links.claim(fresh.code, ("wechat", "o_b"), None, now=T0)).outcome == "claimed"


async def test_asking_again_replaces_the_code(links: LinkStore) -> None:
    old = await links.issue(TG, 7, now=T0)
    new = await links.issue(TG, 7, now=T0)
    assert (await links.claim(old.code, ("wechat", "o_a"), None, now=T0)).outcome == "wrong"
    assert (await links.claim(new.code, ("wechat", "o_a"), None, now=T0)).outcome == "claimed"


async def test_two_chats_typing_one_code_at_once_one_wins(links: LinkStore) -> None:
    for n in range(5):
        issued = await links.issue(TG, 7, now=T0)
        claims = await asyncio.gather(
            *(links.claim(issued.code, ("wechat", f"o_{n}_{k}"), None, now=T0) for k in range(4))
        )
        assert sorted(c.outcome for c in claims) == ["claimed", "used", "used", "used"]


async def test_the_throttle_closes_after_five_wrong_codes_and_opens_after_its_window(
    links: LinkStore,
) -> None:
    issued = await links.issue(TG, 7, now=T0)
    wrong = "00000000" if issued.code != "00000000" else "11111111"
    guesser = ("wechat", "o_guess")
    for n in range(WRONG_MAX):
        tried = await links.claim(wrong, guesser, None, now=T0 + dt.timedelta(seconds=n))
        assert tried.outcome == "wrong"
    shut = await links.claim(issued.code, guesser, None, now=T0 + dt.timedelta(minutes=1))
    assert (shut.outcome, shut.retry_at) == ("throttled", T0 + WRONG_WINDOW)
    reissued = await links.issue(TG, 7, now=T0 + WRONG_WINDOW)
    later = await links.claim(reissued.code, guesser, None, now=T0 + WRONG_WINDOW)
    assert later.outcome == "claimed"
