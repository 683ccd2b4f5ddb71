"""Purchases per second through the ledger, beside a TPC-B-like baseline run by the same script.

    .venv/bin/python -m bench.purchases --db sqlite --clients 32 --seconds 10
    .venv/bin/python -m bench.purchases --db postgres --clients 32 --seconds 10
    .venv/bin/python -m bench.purchases --db sqlite --one-merchant
    .venv/bin/python -m bench.purchases --db sqlite --http

See bench/README.md for what is measured and what the ratio means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import aiosqlite
from sqlalchemy import func, insert, select

from bench._common import (
    insert_members,
    member_ids,
    merchant_ids,
    percentile,
    postgres_admin_url,
    scratch_database,
    scratch_postgres,
    table,
)
from ledger import codes, verify
from ledger.merchants import create_many
from ledger.models import MerchantIn
from ledger.principal import Principal
from ledger.rules import Rules
from ledger.schema import ApiKey, Purchase
from ledger.service import LedgerService
from ledger_client.inprocess import InProcessLedgerClient

# The tills here name members by id with their merchant keys, the path every run of this bench
# has measured; since issue 11 only the system may (tills send the member's code), so the
# bench keeps that path open to stay comparable with runs from before.
BENCH_RULES = Rules(purchase_needs_code=False)

YANGTZE_TOWNS = ((31.2304, 121.4737), (30.2741, 120.1551), (32.0603, 118.7969), (31.2989, 120.5853))


@dataclass
class Run:
    """Completed operations inside the measured window, and their latencies (seconds)."""

    done: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    first_error: str = ""

    @property
    def tps(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0


async def drive(
    clients: int,
    seconds: float,
    count: int | None,
    warmup: float,
    one: Callable[[int, int], Awaitable[None]],
) -> Run:
    """Run ``one(worker, n)`` in ``clients`` concurrent loops; measure after ``warmup`` seconds.

    With ``count`` the window closes after that many operations, otherwise after ``seconds``.
    """
    run = Run()
    measuring = False
    stop = False
    started = 0.0

    async def loop(worker: int) -> None:
        nonlocal stop
        n = 0
        while not stop:
            n += 1
            t0 = time.perf_counter()
            try:
                await one(worker, n)
            except Exception as exc:
                if measuring:
                    run.errors += 1
                    run.first_error = run.first_error or repr(exc)[:200]
                continue
            if measuring and not stop:
                run.done += 1
                run.latencies.append(time.perf_counter() - t0)
                if count is not None and run.done >= count:
                    stop = True

    tasks = [asyncio.create_task(loop(w)) for w in range(clients)]
    await asyncio.sleep(warmup)
    measuring, started = True, time.perf_counter()
    while not stop:
        await asyncio.sleep(0.05)
        if count is None and time.perf_counter() - started >= seconds:
            stop = True
    run.elapsed = time.perf_counter() - started
    await asyncio.gather(*tasks)
    run.latencies.sort()
    return run


# --- baselines ---------------------------------------------------------------------------------

PGBENCH_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)


def _pgbench_args(url: str) -> list[str]:
    parts = urlsplit(url)
    args = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
    if parts.username:
        args += ["-U", parts.username]
    return [*args, parts.path.lstrip("/")]


async def _run(cmd: list[str], env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed:\n{err.decode()}")
    return out.decode()


async def pgbench_baseline(clients: int, seconds: float, count: int | None, scale: int) -> float:
    """``pgbench -b tpcb-like`` on a scratch database; its TPS."""
    exe = shutil.which("pgbench")
    if exe is None:
        raise SystemExit("pgbench is not installed")
    env = {**os.environ}
    if password := urlsplit(postgres_admin_url()).password:
        env["PGPASSWORD"] = password
    async with scratch_postgres() as url:
        conn = _pgbench_args(url)
        await _run([exe, "-i", "-q", "-s", str(scale), *conn], env)
        length = ["-t", str(max(1, count // clients))] if count else ["-T", str(round(seconds))]
        threads = min(clients, os.cpu_count() or 2)
        cmd = [exe, "-b", "tpcb-like", "-c", str(clients), "-j", str(threads), *length, *conn]
        print("baseline:", " ".join(cmd[:-1]), "<scratch db>", file=sys.stderr)
        out = await _run(cmd, env)
    found = PGBENCH_TPS.search(out)
    if found is None:
        raise SystemExit(f"could not read pgbench's tps from:\n{out}")
    return float(found.group(1))


SQLITE_TPCB_SCHEMA = (
    "CREATE TABLE pgbench_branches (bid INTEGER PRIMARY KEY, bbalance INTEGER, filler TEXT)",
    "CREATE TABLE pgbench_tellers (tid INTEGER PRIMARY KEY, bid INTEGER, tbalance INTEGER,"
    " filler TEXT)",
    "CREATE TABLE pgbench_accounts (aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER,"
    " filler TEXT)",
    "CREATE TABLE pgbench_history (tid INTEGER, bid INTEGER, aid INTEGER, delta INTEGER,"
    " mtime TIMESTAMP, filler TEXT)",
)


TPCB = (
    "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid",
    "SELECT abalance FROM pgbench_accounts WHERE aid = :aid",
    "UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid",
    "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = 1",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)"
    " VALUES (:tid, 1, :aid, :delta, CURRENT_TIMESTAMP)",
)


def _tpcb_sync(conn: sqlite3.Connection, params: dict[str, int]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql in TPCB:
            conn.execute(sql, params).fetchall()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


async def sqlite_baseline(
    clients: int, seconds: float, count: int | None, warmup: float, *, per_statement: bool
) -> Run:
    """pgbench's TPC-B-like transaction on SQLite, through aiosqlite, as fast as it goes.

    WAL and ``synchronous=NORMAL`` as the ledger sets them, ``BEGIN IMMEDIATE``, one write
    connection and ``clients`` asyncio workers. The baseline proper hands the transactions
    queued meanwhile to the connection's thread together, as the ledger's own SQLite writer
    does (``per_statement=False``); the other way is the naive one, a driver call (a trip to
    the thread and back) per statement and the connection behind an ``asyncio.Lock``.
    """
    with tempfile.TemporaryDirectory(prefix="gp-bench-tpcb-") as folder:
        db = await aiosqlite.connect(Path(folder) / "tpcb.db", isolation_level=None)
        try:
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
                await db.execute(f"PRAGMA {pragma}")
            for ddl in SQLITE_TPCB_SCHEMA:
                await db.execute(ddl)
            await db.execute("BEGIN")
            await db.execute("INSERT INTO pgbench_branches VALUES (1, 0, '')")
            await db.executemany(
                "INSERT INTO pgbench_tellers VALUES (?, 1, 0, '')", [(t,) for t in range(1, 11)]
            )
            await db.executemany(
                "INSERT INTO pgbench_accounts VALUES (?, 1, 0, '')",
                [(a,) for a in range(1, 100_001)],
            )
            await db.execute("COMMIT")
            lock = asyncio.Lock()
            queue: list[tuple[dict[str, int], asyncio.Future[None]]] = []
            draining = False

            def run_lot(lot: list[tuple[dict[str, int], asyncio.Future[None]]]) -> None:
                loop = lot[0][1].get_loop()
                for params, done in lot:
                    _tpcb_sync(db._conn, params)  # aiosqlite's thread: its own connection
                    loop.call_soon_threadsafe(done.set_result, None)

            async def drain() -> None:
                nonlocal draining
                try:
                    while queue:
                        lot = queue[:64]
                        del queue[:64]
                        await db._execute(run_lot, lot)  # type: ignore[no-untyped-call]
                finally:
                    draining = False

            async def tpcb(_worker: int, _n: int) -> None:
                nonlocal draining
                params = {
                    "aid": random.randint(1, 100_000),
                    "tid": random.randint(1, 10),
                    "delta": random.randint(-5000, 5000),
                }
                if not per_statement:
                    done = asyncio.get_running_loop().create_future()
                    queue.append((params, done))
                    if not draining:
                        draining = True
                        drainer = asyncio.create_task(drain())
                        del drainer  # the queue holds the work; the task ends when it is empty
                    await done
                    return
                async with lock:
                    await db.execute("BEGIN IMMEDIATE")
                    try:
                        for sql in TPCB:
                            await (await db.execute(sql, params)).fetchall()
                        await db.execute("COMMIT")
                    except BaseException:
                        await db.execute("ROLLBACK")
                        raise

            return await drive(clients, seconds, count, warmup, tpcb)
        finally:
            await db.close()


# --- the ledger --------------------------------------------------------------------------------


def bench_merchants(count: int, seed: int = 11) -> list[MerchantIn]:
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        lat, lon = rnd.choice(YANGTZE_TOWNS)
        out.append(
            MerchantIn(
                name=f"绿色商家{i:05d}",
                category=rnd.choice(("grocery", "cafe", "restaurant", "bakery", "pharmacy")),
                address=f"测试路{i}号",
                lat=round(lat + rnd.uniform(-0.1, 0.1), 6),
                lon=round(lon + rnd.uniform(-0.1, 0.1), 6),
                concession_bp=rnd.choice((300, 500, 800, 1000)),
                external_ref=f"bench-{i:05d}",
            )
        )
    return out


@dataclass
class Seeded:
    merchants: list[int]
    members: list[int]
    keys: dict[int, str]


async def seed(service: LedgerService, merchants: int, members: int, keys: bool) -> Seeded:
    ctx = service.ctx
    async with ctx.db.write() as session:
        await create_many(session, bench_merchants(merchants), ctx.now())
    shops = await merchant_ids(ctx.db)
    people = await insert_members(ctx.db, members)
    api_keys: dict[int, str] = {}
    if keys:
        now = ctx.now()
        rows = []
        for merchant_id in shops:
            key = codes.new_api_key("merchant")
            api_keys[merchant_id] = key
            rows.append(
                {
                    "key_hash": codes.api_key_hash(key),
                    "prefix": key[:12],
                    "role": "merchant",
                    "merchant_id": merchant_id,
                    "label": "bench",
                    "created_at": now,
                }
            )
        async with ctx.db.write() as session:
            await session.execute(insert(ApiKey), rows)
    return Seeded(shops, people, api_keys)


def _purchase_picker(
    seeded: Seeded, one_merchant: bool
) -> Callable[[int, int], tuple[int, int, int, str]]:
    tag = f"{os.getpid()}-{time.time_ns()}"

    def pick(worker: int, n: int) -> tuple[int, int, int, str]:
        merchant = seeded.merchants[0] if one_merchant else random.choice(seeded.merchants)
        member = random.choice(seeded.members)
        amount = random.randint(5, 500) * 100 + random.choice((0, 50, 90))
        return merchant, member, amount, f"bench-{tag}-{worker}-{n}"

    return pick


async def ledger_inprocess(args: argparse.Namespace, url: str) -> Run:
    service = await LedgerService.open(url, BENCH_RULES, pool_size=max(20, args.clients))
    try:
        seeded = await seed(service, args.merchants, args.members, keys=False)
        if args.processes > 1:
            run = await _in_processes(args, url)
        else:
            run = await _purchases_in_process(service, seeded, args, args.clients)
        if args.verify:
            await check(service, run)
        return run
    finally:
        await service.close()


async def _purchases_in_process(
    service: LedgerService, seeded: Seeded, args: argparse.Namespace, clients: int
) -> Run:
    pick = _purchase_picker(seeded, args.one_merchant)
    by_merchant = {
        m: InProcessLedgerClient(service, Principal("merchant", merchant_id=m))
        for m in seeded.merchants
    }

    async def purchase(worker: int, n: int) -> None:
        merchant, member, amount, key = pick(worker, n)
        await by_merchant[merchant].record_purchase(merchant, member, amount, key)

    return await drive(clients, args.seconds, args.count, args.warmup, purchase)


async def _in_processes(args: argparse.Namespace, url: str) -> Run:
    """``--processes N``: N processes share the clients, each with its own in-process ledger on
    the same database (the ledger is stateless; this is how it scales past one core)."""
    start_at = time.time() + 8  # every child imported and connected by then
    share = [
        args.clients // args.processes + (i < args.clients % args.processes)
        for i in range(args.processes)
    ]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.purchases",
            "--db",
            args.db,
            "--clients",
            str(clients),
            "--seconds",
            str(args.seconds),
            "--warmup",
            str(args.warmup),
            *(["--one-merchant"] if args.one_merchant else []),
            "--worker-of",
            url,
            "--start-at",
            str(start_at),
            stdout=asyncio.subprocess.PIPE,
        )
        for clients in share
    ]
    outs = [json.loads((await child.communicate())[0]) for child in children]
    run = Run(
        done=sum(o["done"] for o in outs),
        errors=sum(o["errors"] for o in outs),
        latencies=sorted(x for o in outs for x in o["latencies"]),
        elapsed=statistics.fmean(o["elapsed"] for o in outs),
        first_error=next((o["first_error"] for o in outs if o["first_error"]), ""),
    )
    return run


async def worker_process(args: argparse.Namespace) -> None:
    """One of the ``--processes``: purchases on the seeded database, the run as JSON."""
    service = await LedgerService.open(
        args.worker_of, BENCH_RULES, pool_size=max(20, args.clients)
    )
    try:
        seeded = Seeded(await merchant_ids(service.ctx.db), await member_ids(service.ctx.db), {})
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
        run = await _purchases_in_process(service, seeded, args, args.clients)
    finally:
        await service.close()
    print(
        json.dumps(
            {
                "done": run.done,
                "errors": run.errors,
                "elapsed": run.elapsed,
                "latencies": run.latencies,
                "first_error": run.first_error,
            }
        )
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_healthy(base: str, server: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if server.returncode is not None:
                raise SystemExit("the ledger server exited while starting")
            try:
                async with session.get(base + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the ledger server did not become healthy")


async def ledger_http(args: argparse.Namespace, url: str) -> Run:
    """The ledger's own ``serve`` command in a child process; keep-alive clients in this one."""
    service = await LedgerService.open(url)
    try:
        seeded = await seed(service, args.merchants, args.members, keys=True)
    finally:
        await service.close()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GREENPOINTS_LEDGER_URL": url}
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from ledger.cli import main; sys.exit(main(sys.argv[1:]))",
        "serve",
        "--port",
        str(port),
        env=env,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _wait_healthy(base, server)
        pick = _purchase_picker(seeded, args.one_merchant)
        headers = {m: {"Authorization": f"Bearer {k}"} for m, k in seeded.keys.items()}
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=args.clients, keepalive_timeout=60)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

            async def purchase(worker: int, n: int) -> None:
                merchant, member, amount, key = pick(worker, n)
                body = {
                    "merchant_id": merchant,
                    "member_id": member,
                    "amount_fen": amount,
                    "idempotency_key": key,
                }
                async with session.post(
                    base + "/v1/purchases", json=body, headers=headers[merchant]
                ) as response:
                    await response.read()
                    if response.status != 201:
                        raise RuntimeError(f"HTTP {response.status}")

            run = await drive(args.clients, args.seconds, args.count, args.warmup, purchase)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)
    if args.verify:
        service = await LedgerService.open(url)
        try:
            await check(service, run)
        finally:
            await service.close()
    return run


async def check(service: LedgerService, run: Run) -> None:
    """The books still balance and every hash chain verifies after the load."""
    async with service.ctx.db.read() as session:
        purchases = await session.scalar(select(func.count(Purchase.id)))
    checked = await verify.verify(service.ctx)
    if not checked.ok:
        raise SystemExit(f"verify FAILED after the bench: {checked.problems[:3]}")
    assert purchases is not None and purchases >= run.done
    print(
        f"verified: {checked.entries} journal entries, {checked.accounts} accounts",
        file=sys.stderr,
    )


# --- main --------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


async def baselines(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """(label, TPS, extra) of each baseline; the first is the one the ratio is taken against."""
    if args.db == "postgres":
        tps = await pgbench_baseline(args.clients, args.seconds, args.count, args.scale)
        return [(f"pgbench -b tpcb-like -c {args.clients} (scale {args.scale})", tps, "")]
    out = []
    for label, per_statement in (
        (f"sqlite3 TPC-B-like, {args.clients} workers, lots per hand-off", False),
        ("sqlite3 TPC-B-like, a driver call per statement (naive)", True),
    ):
        run = await sqlite_baseline(
            args.clients, args.seconds, args.count, args.warmup, per_statement=per_statement
        )
        out.append((label, run.tps, f" (p99 {_ms(percentile(run.latencies, 99))})"))
    return out


async def main(args: argparse.Namespace) -> None:
    bases = await baselines(args)
    async with scratch_database(args.db, "gp_bench_purchases") as url:
        run = await (ledger_http(args, url) if args.http else ledger_inprocess(args, url))
    how = "HTTP API, keep-alive" if args.http else "in-process client"
    if args.processes > 1:
        how += f", {args.processes} processes"
    where = "one merchant" if args.one_merchant else f"{args.merchants} merchants"
    rows = [
        (f"ledger purchases ({how}, {where})", f"{run.tps:,.0f} TPS"),
        ("  purchases in window / errors", f"{run.done:,} / {run.errors:,}"),
        (
            "  latency p50 / p99",
            f"{_ms(percentile(run.latencies, 50))} / {_ms(percentile(run.latencies, 99))}",
        ),
    ]
    for n, (label, tps, extra) in enumerate(bases):
        rows.append((label, f"{tps:,.0f} TPS{extra}"))
        rows.append(
            ("ratio ledger ÷ baseline" if n == 0 else "  ratio ledger ÷ that", _ratio(run.tps, tps))
        )
    if args.http and args.db == "sqlite":
        rows.append(("aim", "≥ 1,000 requests/s"))
    elif args.db == "postgres":
        rows.append(("aim", "ratio ≥ 0.5"))
    print(
        table(
            rows,
            f"purchases on {args.db}, {args.clients} clients, {dt.datetime.now():%Y-%m-%d %H:%M}",
        )
    )
    if run.first_error:
        print(f"first error: {run.first_error}", file=sys.stderr)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured window (default 10)")
    p.add_argument("--count", type=int, help="measure this many purchases instead of --seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    p.add_argument("--one-merchant", action="store_true", help="every purchase at one merchant")
    p.add_argument("--http", action="store_true", help="through the HTTP API (child process)")
    p.add_argument("--merchants", type=int, default=1000)
    p.add_argument("--members", type=int, default=20_000)
    p.add_argument("--scale", type=int, help="pgbench scale factor (default: --clients)")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="PostgreSQL: share the clients among this many processes, each its own ledger",
    )
    p.add_argument("--worker-of", help=argparse.SUPPRESS)
    p.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip re-verifying every hash chain and balance afterwards",
    )
    args = p.parse_args(argv)
    args.scale = args.scale or args.clients
    if args.processes > 1 and (args.db != "postgres" or args.http or args.count):
        p.error("--processes is for in-process runs on PostgreSQL, timed by --seconds")
    return args


if __name__ == "__main__":
    arguments = parse()
    asyncio.run(worker_process(arguments) if arguments.worker_of else main(arguments))
