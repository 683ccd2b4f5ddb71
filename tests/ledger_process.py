"""The ledger as the fault tests need it: a real ``greenpoints ledger serve`` process that can be
SIGKILLed and started again on the same database, a small alliance seeded beforehand, the
ledger's books read straight from its database, and a throwaway PostgreSQL cluster of the
test's own that can be stopped under a running ledger without touching the shared server.

Everything here waits on things that happen (a log line, a process exit, an answer), never on
the clock; only the PostgreSQL recovery poll in the tests sleeps between looks at an external
process, bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ledger import apikeys
from ledger.db import Database
from ledger.models import MerchantIn, PurchaseRequest, ResolveMemberRequest
from ledger.principal import SYSTEM
from ledger.schema import (
    IdempotencyRecord,
    Member,
    MerchantBalance,
    Purchase,
    Redemption,
)
from ledger.service import LedgerService
from tests.ledger_support import GREENPOINTS, Run

READY = "ledger listening on"


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the ledger in a process of its own -------------------------------------------------------


@dataclass
class LedgerProcess:
    """``greenpoints ledger serve`` on one database and one port, started and killed for real.

    The port stays the same across restarts, so clients keep their base URL as they would
    behind a service address. Its log (stderr) is kept, the last lines quoted when it fails.
    """

    database_url: str
    port: int = field(default_factory=free_port)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=400))
    starts: int = 0
    _proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(list(self.log)[-lines:])

    async def start(self, within: float = 60.0) -> None:
        """Start it and return once it says it is listening (or fail with its log)."""
        assert self._proc is None or self._proc.returncode is not None, "already running"
        env = {**os.environ, "GREENPOINTS_LEDGER_URL": self.database_url}
        env.pop("GREENPOINTS_LOG_JSON", None)
        self._proc = await asyncio.create_subprocess_exec(
            str(GREENPOINTS), "ledger", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self.starts += 1
        listening = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(self._proc, listening))
        exited = asyncio.ensure_future(self._proc.wait())
        try:
            done, _ = await asyncio.wait(
                {listening, exited}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
        if listening not in done:
            await self.stop()
            raise AssertionError(f"the ledger did not start (start {self.starts}):\n{self.tail()}")

    async def _read(
        self, proc: asyncio.subprocess.Process, listening: asyncio.Future[None]
    ) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.log.append(f"[{self.starts}] {line}")
            if READY in line and not listening.done():
                listening.set_result(None)

    async def kill(self) -> int:
        """SIGKILL: no shutdown code runs, in-flight transactions die with the process."""
        return await self._end(signal.SIGKILL)

    async def stop(self) -> int:
        return await self._end(signal.SIGTERM)

    async def _end(self, sig: signal.Signals) -> int:
        proc = self._proc
        assert proc is not None
        if proc.returncode is None:
            proc.send_signal(sig)
        code = await proc.wait()
        if self._reader is not None:
            await self._reader  # stderr closes with the process
        return code


async def run_cli(database_url: str, *args: str, within: float = 60.0) -> Run:
    """``greenpoints ledger ARGS`` on the database; killed (and the test failed) if it has not
    finished ``within`` seconds — a backup that never completes must not hang the suite."""
    env = {**os.environ, "GREENPOINTS_LEDGER_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        str(GREENPOINTS), "ledger", *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        command = " ".join(args)
        raise AssertionError(f"greenpoints ledger {command}: not done in {within} s") from None
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


# --- a small alliance to work on --------------------------------------------------------------

RICH_PURCHASE_FEN = 5_000_000  # what each member spent before the test, for vouchers to use


@dataclass(frozen=True)
class Alliance:
    """Merchants, members and keys, with the books as they stood when seeding finished."""

    merchant_ids: list[int]
    member_ids: list[int]
    bot_key: str
    merchant_keys: dict[int, str]
    books: Books


async def seed_alliance(
    database_url: str, members: int, *, vouchers: bool = True, idle_members: int = 0
) -> Alliance:
    """Two merchants and ``members`` members, in-process on the database the server will use.

    With ``vouchers`` each member first buys big and a release turns some of the points into
    vouchers, so redemptions in the test have vouchers to apply. ``idle_members`` adds members
    who signed up and never bought anything, in bulk, to give the database a realistic size.
    """
    service = await LedgerService.open(database_url)
    try:
        shops = [
            await service.create_merchant(
                SYSTEM,
                MerchantIn(name="锦城绿色生活超市", category="grocery", lat=30.2341,
                           lon=119.7239, concession_bp=1000, voucher_cap_bp=2000),
            ),
            await service.create_merchant(
                SYSTEM,
                MerchantIn(name="钱王茶庄", category="tea", lat=30.2400, lon=119.7300,
                           concession_bp=1500, voucher_cap_bp=3000),
            ),
        ]
        member_ids = [
            (
                await service.resolve_member(
                    SYSTEM,
                    ResolveMemberRequest(channel="fault", external_id=str(n),
                                         display_name=f"会员{n}"),
                )
            ).id
            for n in range(members)
        ]
        if vouchers:
            for n, member in enumerate(member_ids):
                await service.record_purchase(
                    SYSTEM,
                    PurchaseRequest(merchant_id=shops[0].id, member_id=member,
                                    amount_fen=RICH_PURCHASE_FEN, idempotency_key=f"seed-{n:04d}"),
                )
            await service.release(SYSTEM)
        if idle_members:
            await _idle_members(service, idle_members)
        bot_key = await apikeys.create(service.ctx, "bot", None, "fault test bot")
        merchant_keys = {
            shop.id: await apikeys.create(service.ctx, "merchant", shop.id, "fault test till")
            for shop in shops
        }
    finally:
        await service.close()
    return Alliance(
        [s.id for s in shops], member_ids, bot_key, merchant_keys, await read_books(database_url)
    )


async def _idle_members(service: LedgerService, count: int) -> None:
    """``count`` members with a chat identity each and no purchases, generated inside SQLite."""
    from sqlalchemy import DateTime, bindparam, text

    assert service.ctx.db.is_sqlite, "idle members are generated by SQLite itself"
    now = bindparam("now", service.ctx.now(), type_=DateTime)
    async with service.ctx.db.write() as session:
        first = int(await session.scalar(select(func.coalesce(func.max(Member.id), 0))) or 0) + 1
        numbers = (
            "WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n WHERE i < :last) "
        )
        params = {"first": first, "last": first + count - 1}
        await session.execute(
            text(numbers + "INSERT INTO members (id, locale, display_name, points, vouchers_fen, "
                 "created_at, last_active_at) SELECT i, 'zh_Hans', NULL, 0, 0, :now, :now FROM n")
            .bindparams(now), params,
        )
        await session.execute(
            text(numbers + "INSERT INTO member_identities (channel, external_id, member_id, "
                 "created_at) SELECT 'telegram', printf('idle-%09d', i), i, :now FROM n")
            .bindparams(now), params,
        )


# --- the books, read straight from the database -----------------------------------------------


@dataclass(frozen=True)
class Books:
    """What the database holds: balances, and which keyed requests took effect."""

    member_points: dict[int, int]
    member_vouchers: dict[int, int]
    merchant_points: dict[int, int]
    merchant_settlement: dict[int, int]
    purchases: dict[int, Purchase]  # by id
    redemptions: dict[int, Redemption]  # by id
    keyed: dict[str, dict[str, Any]]  # idempotency key -> the first answer stored for it

    def purchase_ids(self) -> set[int]:
        return set(self.purchases)


async def read_books(database_url: str, key_prefix: str = "") -> Books:
    db = Database(database_url, pool_size=2)
    try:
        async with db.read() as session:
            members = (
                await session.execute(
                    select(Member.id, Member.points, Member.vouchers_fen).where(
                        (Member.points != 0) | (Member.vouchers_fen != 0)
                    )
                )
            ).all()
            merchants = (
                await session.execute(
                    select(
                        MerchantBalance.merchant_id,
                        func.sum(MerchantBalance.points),
                        func.sum(MerchantBalance.settlement_fen),
                    ).group_by(MerchantBalance.merchant_id)
                )
            ).all()
            purchases = (await session.scalars(select(Purchase))).all()
            redemptions = (await session.scalars(select(Redemption))).all()
            keyed = (
                await session.execute(
                    select(IdempotencyRecord.key, IdempotencyRecord.response).where(
                        IdempotencyRecord.key.startswith(key_prefix)
                    )
                )
            ).all()
    finally:
        await db.dispose()
    return Books(
        member_points={m.id: m.points for m in members},
        member_vouchers={m.id: m.vouchers_fen for m in members},
        merchant_points={r[0]: int(r[1]) for r in merchants},
        merchant_settlement={r[0]: int(r[2]) for r in merchants},
        purchases={p.id: p for p in purchases},
        redemptions={r.id: r for r in redemptions},
        keyed={k: dict(v) for k, v in keyed},
    )


# --- a PostgreSQL cluster of the test's own ---------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit()
        else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@dataclass
class PostgresCluster:
    """initdb'd into a temporary directory, on a free port, stopped and started at will.

    PostgreSQL refuses to run as root, so as root (CI) every command runs as the ``postgres``
    OS user through ``runuser``; as anyone else, as that user.
    """

    bin: Path
    root: Path
    port: int = field(default_factory=free_port)
    as_user: Sequence[str] = ()

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def _run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self.as_user, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        text = out.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{text}")
        return text

    async def init(self) -> None:
        await self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )

    async def start(self) -> None:
        """Start and return once it accepts connections (``pg_ctl -w``)."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=100 -c shared_buffers=32MB"
        )
        await self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-o", options, "-w", "-t", "60", "start",
        )

    async def stop(self, mode: str = "immediate") -> None:
        """``immediate``: every backend killed at once, no checkpoint; like pulling the plug."""
        await self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.root / "log").read_text("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@contextlib.asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[PostgresCluster]:
    """A running cluster of this test's own, removed afterwards; skips only when this machine
    has no PostgreSQL server binaries or no way to run them as a non-root user."""
    bin_dir = _postgres_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="gp-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root needs runuser and a postgres OS user to run PostgreSQL")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    cluster = PostgresCluster(bin_dir, root, as_user=as_user)
    started = False
    try:
        await cluster.init()
        await cluster.start()
        started = True
        yield cluster
    finally:
        if started:
            with contextlib.suppress(AssertionError):
                await cluster.stop()  # already stopped is fine
        shutil.rmtree(root, ignore_errors=True)
