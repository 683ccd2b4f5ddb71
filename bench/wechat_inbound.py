"""WeChat inbound: deliveries per second through the /wechat endpoint, and reply time beside the
platform's 5-second deadline (issue 10: aim p99 <= 500 ms at 200 messages/s).

    .venv/bin/python -m bench.wechat_inbound                      # SQLite bot database
    .venv/bin/python -m bench.wechat_inbound --db postgres --rate 200 --seconds 10

What runs: the real endpoint (signature check, safe-mode AES decrypt and reply encryption with
wechatpy, parsing, the shared-database dedupe claim, the service-window upsert, the passive
reply and storing it for retries) on 127.0.0.1, with the real features behind it
(``WeChatConversation`` over the core's router, an in-process ledger on the same kind of
database, seeded with the tests' shops). Two messages: a follower's ``/balance`` (a ledger read)
and a cashier's ``scancode_waitmsg`` event carrying a 20-digit code the ledger does not know (the
cashier's code lookup); every person follows, and every cashier joins through a staff invite's
QR scene, before timing. Bodies are signed and encrypted before timing; every delivery is a new
message (no dedupe hits). ``--handoffs`` also counts the calls handed to the SQLite driver's
thread per delivery (aiosqlite; the bot's and the ledger's). Baseline: a bare aiohttp handler
answering ``success`` on the same machine, same client.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import os
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import aiosqlite.core
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench._common import scratch_database
from ledger.principal import Principal
from ledger.service import LedgerService
from ledger_client.inprocess import InProcessLedgerClient
from tests.fake_wechat import FakeWeChat
from tests.wechat_harness import WeChatRig, features_rig

Request = tuple[dict[str, str], bytes]


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _paced(
    session: aiohttp.ClientSession, url: str, requests: Sequence[Request], rate: float
) -> tuple[float, list[float], int]:
    """Open loop: request i starts at i / rate whatever the earlier ones do."""
    latencies: list[float] = []
    bad = 0
    start = time.perf_counter()

    async def one(i: int, req: Request) -> None:
        nonlocal bad
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the schedule itself, not a wait for a result
        began = time.perf_counter()
        async with session.post(url, params=req[0], data=req[1]) as response:
            body = await response.read()
            if response.status != 200 or not body:
                bad += 1
        latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    return time.perf_counter() - start, latencies, bad


async def _burst(
    session: aiohttp.ClientSession, url: str, requests: Sequence[Request], concurrency: int
) -> tuple[float, float]:
    """(deliveries per second, CPU ms of this process per delivery: client included)."""
    queue = list(reversed(requests))

    async def worker() -> None:
        while queue:
            query, body = queue.pop()
            async with session.post(url, params=query, data=body) as response:
                await response.read()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    return len(requests) / wall, used * 1000 / len(requests)


_SERIAL = itertools.count(1)  # events' CreateTime: every delivery a new message


def _openid(kind: str, n: int) -> str:
    return f"o_bench_{kind}_{n:05d}"


def _requests(fake: FakeWeChat, kind: str, count: int, people: int) -> list[Request]:
    out: list[Request] = []
    for i in range(count):
        openid = _openid(kind, i % people)
        if kind == "balance":
            fields = fake.text(openid, "/balance")
        else:
            serial = next(_SERIAL)
            fields = fake.event(
                openid,
                "scancode_waitmsg",
                EventKey="scan",
                CreateTime=1_700_000_000 + serial,
                ScanCodeInfo={"ScanType": "qrcode", "ScanResult": f"9{serial:019d}"},
            )
        query, body = fake.signed(fields)
        out.append((query, body.encode()))
    return out


@contextlib.asynccontextmanager
async def _features_rig(kind: str) -> AsyncIterator[tuple[WeChatRig, LedgerService, int]]:
    """The endpoint with the real features and an in-process ledger (issue 10's wiring)."""
    async with (
        scratch_database(kind, "wechat-ledger") as ledger_url,
        scratch_database(kind, "wechat-bot") as bot_url,
        features_rig(ledger_url, bot_url) as wx,
    ):
        yield wx.rig, wx.ledger, wx.shop_id


async def _people(rig: WeChatRig, ledger: LedgerService, shop_id: int, people: int) -> None:
    """Followers for ``balance``; cashiers of the shop (joined by invite) for ``scan``."""
    admin = InProcessLedgerClient(ledger, Principal("admin"))
    fake = rig.fake
    for n in range(people):
        await fake.push(fake.event(_openid("balance", n), "subscribe"))
        invite = await admin.create_staff_invite(shop_id)
        await fake.push(
            fake.event(_openid("scan", n), "subscribe", EventKey=f"qrscene_{invite.code}")
        )
    await admin.close()


class _Handoffs:
    """Calls handed to aiosqlite's thread (each a queue put and a future resolved)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._original: Any = None

    def __enter__(self) -> _Handoffs:
        original = self._original = aiosqlite.core.Connection._execute
        counts = self.counts

        async def counting(conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            counts[getattr(fn, "__qualname__", "?")] += 1
            return await original(conn, fn, *args, **kwargs)

        aiosqlite.core.Connection._execute = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        aiosqlite.core.Connection._execute = self._original  # type: ignore[method-assign]


async def _baseline_url() -> tuple[TestServer, str]:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/wechat", ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("/wechat"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--handoffs", action="store_true")
    args = parser.parse_args()
    paced_n = int(args.rate * args.seconds)
    print(f"load before: {os.getloadavg()}")
    rows: list[str] = []
    baseline_server, baseline = await _baseline_url()
    async with _features_rig(args.db) as (rig, ledger, shop_id):
        await _people(rig, ledger, shop_id, args.people)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            for kind in ("balance", "scan"):
                await rig.endpoint.drain()  # late replies of the last kind: not this one's
                if args.handoffs:
                    counted = _requests(rig.fake, kind, 100, args.people)
                    with _Handoffs() as handoffs:
                        for query, body in counted:
                            async with session.post(rig.url, params=query, data=body) as r:
                                await r.read()
                    per = sum(handoffs.counts.values()) / len(counted)
                    rows.append(f"{kind:8} SQLite driver hand-offs per delivery: {per:.1f} "
                                f"{dict(sorted(handoffs.counts.items()))}")
                burst_reqs = _requests(rig.fake, kind, args.burst, args.people)
                base_rate, base_cpu = await _burst(session, baseline, burst_reqs, args.concurrency)
                burst_reqs = _requests(rig.fake, kind, args.burst, args.people)
                our_rate, our_cpu = await _burst(session, rig.url, burst_reqs, args.concurrency)
                paced_reqs = _requests(rig.fake, kind, paced_n, args.people)
                took, lat, bad = await _paced(session, rig.url, paced_reqs, args.rate)
                rows.append(
                    f"{kind:8} burst {our_rate:7.0f}/s (baseline {base_rate:6.0f}/s, "
                    f"ratio {our_rate / base_rate:4.2f}; CPU {our_cpu:5.2f} ms vs "
                    f"{base_cpu:4.2f} ms) | paced {paced_n / took:5.0f}/s "
                    f"p50 {statistics.median(lat) * 1000:6.1f} ms "
                    f"p99 {_pct(lat, 0.99) * 1000:6.1f} ms max {max(lat) * 1000:6.1f} ms "
                    f"(deadline 5000 ms; aim p99 <= 500) bad {bad}"
                )
    await baseline_server.close()
    print(
        f"db={args.db} rate={args.rate}/s x {args.seconds}s, people={args.people}, "
        f"burst={args.burst} @ {args.concurrency} in flight"
    )
    for row in rows:
        print(row)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
