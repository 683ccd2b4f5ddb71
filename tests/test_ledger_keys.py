"""API keys under attack and revocation (issue 14 item 6, issue 11): forged keys never push
known ones out of the cache, an address sending unknown keys is refused with 429, and a key
revoked through the admin API or ``greenpoints ledger revoke-key`` is refused by every ledger
process from the next request on — tried with two real ``greenpoints ledger serve`` processes."""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import pytest

from ledger import apikeys
from ledger.errors import Throttled, Unauthorized
from ledger.service import LedgerService
from tests.conftest import Served
from tests.ledger_process import LedgerProcess, run_cli, seed_alliance
from tests.ledger_support import http, is_error

FORGED = 2_000  # four times what the known-key cache holds in this test


async def test_forged_keys_never_evict_known_ones(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apikeys, "KNOWN_KEYS", FORGED // 4)
    ring = apikeys.KeyRing(served.service.ctx)
    real = [served.keys[role] for role in ("bot", "merchant", "admin")]
    for key in real:
        await ring.authenticate(key, "10.0.0.1")
    assert ring.lookups == 3
    for n in range(FORGED):
        with pytest.raises(Unauthorized):
            await ring.authenticate(f"gp_bot_forged{n:06d}", f"10.1.{n // 250}.{n % 250}")
    assert ring.lookups == 3 + FORGED  # each forged key was a database miss, none remembered
    for key in real:
        await ring.authenticate(key, "10.0.0.1")
    assert ring.lookups == 3 + FORGED  # the known keys were still known: no read


async def test_the_known_key_cache_is_bounded(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apikeys, "KNOWN_KEYS", 2)
    ring = apikeys.KeyRing(served.service.ctx)
    bot, merchant, admin = (served.keys[r] for r in ("bot", "merchant", "admin"))
    for key in (bot, merchant, bot, admin):  # admin pushes out the least recently used: merchant
        await ring.authenticate(key, "10.0.0.1")
    assert ring.lookups == 3
    await ring.authenticate(bot, "10.0.0.1")
    assert ring.lookups == 3
    await ring.authenticate(merchant, "10.0.0.1")
    assert ring.lookups == 4


async def test_an_address_sending_unknown_keys_is_refused(
    served: Served, http_session: aiohttp.ClientSession
) -> None:
    ring = served.service.keys
    ring.failures_per_minute = 5
    url = served.url + "/v1/stats"
    for n in range(5):
        answer = await http(http_session, "GET", url, key=f"gp_admin_guess{n}")
        assert is_error(answer, 401, "unauthorized") is None
    for key in ("gp_admin_guess9", served.keys["admin"]):  # refused before any look-up
        answer = await http(http_session, "GET", url, key=key)
        assert is_error(answer, 429, "throttled") is None
        assert 1 <= answer.body["error"]["details"]["retry_after"] <= 60
    # Another address is not held to this one's failures.
    assert (await ring.authenticate(served.keys["admin"], "192.0.2.7")).role == "admin"
    with pytest.raises(Throttled):
        await ring.authenticate(served.keys["admin"], "127.0.0.1")


async def _status(session: aiohttp.ClientSession, url: str, key: str) -> int:
    async with session.get(url + "/v1/stats", headers={"Authorization": f"Bearer {key}"}) as r:
        await r.read()
        return r.status


async def test_revocation_is_immediate_in_every_ledger_process(database_url: str) -> None:
    alliance = await seed_alliance(database_url, members=1, vouchers=False)
    service = await LedgerService.open(database_url)
    try:
        admin = await apikeys.create(service.ctx, "admin", None, "revoker")
        doomed = [await apikeys.create(service.ctx, "bot", None, f"doomed {n}") for n in range(2)]
        doomed_ids = [await apikeys.key_id(service.ctx, key) for key in doomed]
    finally:
        await service.close()
    processes = [LedgerProcess(database_url), LedgerProcess(database_url)]
    async with contextlib.AsyncExitStack() as stack:
        for process in processes:
            await process.start()
            stack.push_async_callback(process.stop)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        a, b = (p.url for p in processes)
        for url in (a, b):  # every key known (and cached) by both processes
            for key in (*doomed, alliance.bot_key):
                assert await _status(session, url, key) == 200
        # Through the admin API of process A; process B refuses the key on its next request.
        async with session.delete(
            f"{a}/v1/api-keys/{doomed_ids[0]}", headers={"Authorization": f"Bearer {admin}"}
        ) as response:
            revoked: Any = await response.json()
            assert response.status == 200, revoked
        assert revoked["key_id"] == doomed_ids[0] and revoked["already_revoked"] is False
        assert [await _status(session, url, doomed[0]) for url in (b, a)] == [401, 401]
        # From the command line, by the key itself on standard input or by id.
        run = await run_cli(database_url, "revoke-key", "--key", doomed[1])
        assert run.code == 0 and f"key {doomed_ids[1]} revoked at" in run.out, run
        assert [await _status(session, url, doomed[1]) for url in (a, b)] == [401, 401]
        again = await run_cli(database_url, "revoke-key", "--id", str(doomed_ids[0]))
        assert again.code == 0 and "was already revoked" in again.out, again
        unknown = await run_cli(database_url, "revoke-key", "--id", "999999")
        assert unknown.code == 2 and "no such API key" in unknown.err, unknown
        # Other keys are untouched; a second revocation answers the first one's time.
        assert [await _status(session, url, alliance.bot_key) for url in (a, b)] == [200, 200]
        async with session.delete(
            f"{b}/v1/api-keys/{doomed_ids[0]}", headers={"Authorization": f"Bearer {admin}"}
        ) as response:
            twice: Any = await response.json()
        assert twice["already_revoked"] is True and twice["revoked_at"] == revoked["revoked_at"]
