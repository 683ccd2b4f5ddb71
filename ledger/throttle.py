"""Slow down, then lock out, whoever keeps submitting redemption codes that do not exist.

Codes carry 66 bits, so guessing is hopeless anyway; the throttle makes it also loud and slow.
Each actor (a merchant key, or one staff account behind the bot) has a window of failures: past
``SLOW_AFTER`` each further failure costs an exponentially growing wait, and past ``LOCK_AFTER``
the actor is locked for ``LOCK_FOR``.

Every look-up is counted BEFORE the code is checked, atomically in the database (the actor's
row is locked: ``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): it is ``pending``
until its outcome is known, then becomes a failure (code not found) or is dropped (the code
exists). A look-up is refused while failures + pending would pass ``LOCK_AFTER``. So however
many attempts arrive at once, in however many ledger processes, at most ``LOCK_AFTER`` codes per
actor per window are ever checked without being found (issue 14: 1,000 concurrent guesses had
1,006 checked when the failure was recorded after the check). Only settled failures slow an
actor down, so a chain's many tills redeeming real codes at once are not throttled: past
``LOCK_AFTER`` look-ups in flight the next ones wait (up to ``BUSY_WAIT``) for a slot, woken by
a settle in this process or a look every ``BUSY_POLL`` for other processes'. A look-up whose
process died before settling stays pending until the window resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from ledger import codes
from ledger.context import Ctx
from ledger.db import Conn, Statement, dialect_insert
from ledger.errors import CodeNotFound, Throttled
from ledger.schema import CodeAttempt

log = logging.getLogger(__name__)

WINDOW = dt.timedelta(minutes=15)
SLOW_AFTER = 5
LOCK_AFTER = 20
LOCK_FOR = dt.timedelta(minutes=15)
BUSY_WAIT = 10.0  # seconds a look-up waits for a slot while LOCK_AFTER others are in flight
BUSY_POLL = 0.05  # seconds between looks for slots freed by other ledger processes
_BUSY = -1
# Per event loop: set (and replaced) whenever a look-up settles here, to wake waiting ones.
_settled: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
    weakref.WeakKeyDictionary()
)


def _settled_event() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    event = _settled.get(loop)
    if event is None:
        event = _settled[loop] = asyncio.Event()
    return event


def _wake() -> None:
    loop = asyncio.get_running_loop()
    event = _settled.pop(loop, None)
    if event is not None:
        event.set()

_t = CodeAttempt.metadata.tables[CodeAttempt.__tablename__]
_COLUMNS = (_t.c.failures, _t.c.pending, _t.c.window_started_at, _t.c.locked_until)
_READ = Statement(select(*_COLUMNS).where(_t.c.principal == bindparam("actor")))
_LOCK = Statement(select(*_COLUMNS).where(_t.c.principal == bindparam("actor")).with_for_update())
_CREATE = Statement(
    lambda dialect: dialect_insert(dialect, _t)
    .values(
        principal=bindparam("actor"),
        failures=0,
        pending=0,
        window_started_at=bindparam("now"),
        locked_until=None,
    )
    .on_conflict_do_nothing(index_elements=["principal"])
)
_SET = Statement(
    update(_t)
    .where(_t.c.principal == bindparam("actor"))
    .values(
        failures=bindparam("failures"),
        pending=bindparam("pending"),
        window_started_at=bindparam("started"),
        locked_until=bindparam("until"),
    )
)


def _wait(until: dt.datetime | None, now: dt.datetime) -> int | None:
    if until is not None and until > now:
        return max(1, int((until - now).total_seconds()))
    return None


async def check(ctx: Ctx, actor: str) -> None:
    """A read-only early refusal (Throttled, 429) for an actor already locked or slowed; the
    binding count is ``reserve``'s."""
    now = ctx.now()
    row = await ctx.db.run_direct(lambda conn: _READ.first(conn, actor=actor), readonly=True)
    if row is None:
        return
    failures, _pending, started, until = row
    wait = _wait(until, now)
    if wait is None and failures >= LOCK_AFTER and now - started <= WINDOW:
        wait = max(1, int((started + WINDOW - now).total_seconds()))
    if wait is not None:
        raise Throttled("too many unknown codes; wait before trying again", retry_after=wait)


def _penalty(failures: int) -> dt.timedelta | None:
    if failures >= LOCK_AFTER:
        return LOCK_FOR
    if failures > SLOW_AFTER:
        return dt.timedelta(seconds=min(2 ** (failures - SLOW_AFTER), LOCK_FOR.total_seconds()))
    return None


@dataclass(frozen=True)
class Reservation:
    """One look-up counted as pending, to be settled by ``settle``."""

    actor: str
    window_started_at: dt.datetime  # a look-up from an earlier window settles nothing pending


async def reserve(ctx: Ctx, actor: str) -> Reservation:
    """Count one look-up as pending before the code is checked. Raises Throttled (429,
    ``retry_after`` seconds) when the actor is slowed or locked or its window's failures are
    used up; while failures + look-ups in flight are at ``LOCK_AFTER`` it waits for one to
    settle, and past ``BUSY_WAIT`` raises Throttled with ``retry_after`` 1."""

    async def work(conn: Conn) -> Reservation | int:
        now = ctx.now()  # each look again: a waiting look-up may take a while
        row = await _LOCK.first(conn, actor=actor)
        if row is None:
            await _CREATE.rows(conn, actor=actor, now=now)
            row = await _LOCK.first(conn, actor=actor)
            assert row is not None
        failures, pending, started, until = row
        if now - started > WINDOW:
            failures, pending, started = 0, 0, now
        wait = _wait(until, now)
        if wait is None and failures >= LOCK_AFTER:
            wait = max(1, int((started + WINDOW - now).total_seconds()))
        if wait is not None:
            return wait
        if failures + pending >= LOCK_AFTER:
            return _BUSY  # the window's remaining look-ups are all in flight
        await _SET.rows(
            conn, actor=actor, failures=failures, pending=pending + 1, started=started,
            until=until,
        )
        return Reservation(actor, started)

    deadline = asyncio.get_running_loop().time() + BUSY_WAIT
    while True:
        settled = _settled_event()  # taken before looking, so no settle is missed
        outcome = await ctx.db.run_direct(work)
        if isinstance(outcome, Reservation):
            return outcome
        left = deadline - asyncio.get_running_loop().time()
        if outcome != _BUSY or left <= 0:
            raise Throttled(
                "too many unknown codes; wait before trying again", retry_after=max(1, outcome)
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), min(BUSY_POLL, left))


async def settle(ctx: Ctx, reservation: Reservation, *, failed: bool) -> int:
    """The look-up's outcome: a failure (the code was not found) is counted and may slow or lock
    the actor; otherwise the look-up is just no longer pending. Returns failures in window."""
    actor = reservation.actor
    now = ctx.now()

    async def work(conn: Conn) -> int:
        row = await _LOCK.first(conn, actor=actor)
        if row is None:  # pragma: no cover - rows are never deleted
            return 0
        failures, pending, started, until = row
        if started == reservation.window_started_at:
            pending = max(0, pending - 1)
        if failed:
            if now - started > WINDOW:
                failures, pending, started = 0, 0, now
            failures += 1
            penalty = _penalty(failures)
            if penalty is not None:
                until = max(until or now, now + penalty)
        await _SET.rows(
            conn, actor=actor, failures=failures, pending=pending, started=started, until=until
        )
        return int(failures)

    try:
        return await ctx.db.run_direct(work)
    finally:
        _wake()


@asynccontextmanager
async def guess(ctx: Ctx, actor: str, code: str) -> AsyncIterator[Reservation]:
    """Count a look-up of ``code`` around the block: a CodeNotFound settles it as a failure,
    any other outcome as no guess. Raises Throttled before the block runs when refused."""
    reservation = await reserve(ctx, actor)
    try:
        yield reservation
    except CodeNotFound:
        failures = await settle(ctx, reservation, failed=True)
        log.warning(
            "unknown redemption code from %s (%d in window) code=%s",
            actor,
            failures,
            codes.mask(code),
        )
        raise
    except Exception:
        await settle(ctx, reservation, failed=False)
        raise
    await settle(ctx, reservation, failed=False)
