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
from ledger.principal import SYSTEM
from ledger.service import LedgerService
from tests.ledger_process import LedgerProcess, seed_alliance

GUESSES = 1000
PREVIEWS = 256
REAL = 16  # concurrent redemptions of real codes by one merchant key, below LOCK_AFTER


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
            body.update(idempotency_key=f"guess-{n:06d}", vouchers_applied_fen=0, pay_fen=1000)
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
    alliance = await seed_alliance(database_url, members=REAL, vouchers=False)
    (shop, key), (other, other_key) = alliance.merchant_keys.items()
    service = await LedgerService.open(database_url)
    try:
        real = [(await service.issue_code(SYSTEM, m)).numeric_code for m in alliance.member_ids]
    finally:
        await service.close()
    processes = [LedgerProcess(database_url), LedgerProcess(database_url)]
    async with contextlib.AsyncExitStack() as stack:
        for process in processes:
            await process.start()
            stack.push_async_callback(process.stop)
        urls = [p.url for p in processes]
        connector = aiohttp.TCPConnector(limit=GUESSES)
        http = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        # A chain's tills redeeming real codes at once are not guessers: every one goes through.
        tills = await asyncio.gather(*(
            http.post(urls[n % 2] + "/v1/redemptions", headers={"Authorization": f"Bearer {key}"},
                      json={"code": code, "merchant_id": shop, "bill_fen": 1000,
                            "vouchers_applied_fen": 0, "pay_fen": 1000,  # no vouchers yet
                            "idempotency_key": f"real-{n:04d}"})
            for n, code in enumerate(real)
        ))
        assert [r.status for r in tills] == [201] * REAL
        for response in tills:
            response.release()
        guesses = await _fire(http, urls, key, shop, GUESSES, redeem=True)
        previews = await _fire(http, urls, other_key, other, PREVIEWS, redeem=False)
    print(f"\n{GUESSES} concurrent guesses: {dict(guesses)}; "
          f"{PREVIEWS} concurrent previews: {dict(previews)} (limit {throttle.LOCK_AFTER})")
    for answers, sent in ((guesses, GUESSES), (previews, PREVIEWS)):
        assert sum(answers.values()) == sent
        assert set(answers) <= {404, 429}, answers
        assert 1 <= answers[404] <= throttle.LOCK_AFTER, answers
