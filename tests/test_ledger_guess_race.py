"""Issue 14: the code-guess lock holds however the guesses arrive — 1,000 at once from one till,
spread over two real ``greenpoints ledger serve`` processes on one database, and 256 concurrent
previews from another till. Checked (answered 404 code_not_found) stays within
``throttle.LOCK_AFTER``; everything else is a 429; nothing is a 5xx."""

from __future__ import annotations

import asyncio
import collections
import contextlib

import aiohttp

from ledger import throttle
from tests.ledger_process import LedgerProcess, seed_alliance

GUESSES = 1000
PREVIEWS = 256


async def _fire(
    http: aiohttp.ClientSession, urls: list[str], key: str, merchant_id: int, count: int,
    redeem: bool,
) -> collections.Counter[int]:
    """``count`` requests with distinct unknown codes, released together by one event."""
    start = asyncio.Event()

    async def one(n: int) -> int:
        body: dict[str, object] = {"code": f"{n + 10**19:020d}", "merchant_id": merchant_id,
                                   "bill_fen": 1000}
        path = "/v1/redemptions/preview"
        if redeem and n % 2:
            body["idempotency_key"] = f"guess-{n:06d}"
            path = "/v1/redemptions"
        await start.wait()
        async with http.post(urls[n % len(urls)] + path, json=body,
                             headers={"Authorization": f"Bearer {key}"}) as response:
            await response.read()
            return response.status

    tasks = [asyncio.ensure_future(one(n)) for n in range(count)]
    start.set()
    return collections.Counter(await asyncio.gather(*tasks))


async def test_concurrent_guesses_stay_within_the_limit(database_url: str) -> None:
    alliance = await seed_alliance(database_url, members=1, vouchers=False)
    (shop, key), (other, other_key) = alliance.merchant_keys.items()
    processes = [LedgerProcess(database_url), LedgerProcess(database_url)]
    async with contextlib.AsyncExitStack() as stack:
        for process in processes:
            await process.start()
            stack.push_async_callback(process.stop)
        urls = [p.url for p in processes]
        connector = aiohttp.TCPConnector(limit=GUESSES)
        http = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        guesses = await _fire(http, urls, key, shop, GUESSES, redeem=True)
        previews = await _fire(http, urls, other_key, other, PREVIEWS, redeem=False)
    print(f"\n{GUESSES} concurrent guesses: {dict(guesses)}; "
          f"{PREVIEWS} concurrent previews: {dict(previews)} (limit {throttle.LOCK_AFTER})")
    for answers, sent in ((guesses, GUESSES), (previews, PREVIEWS)):
        assert sum(answers.values()) == sent
        assert set(answers) <= {404, 429}, answers
        assert 1 <= answers[404] <= throttle.LOCK_AFTER, answers
