"""Slow down, then lock out, whoever keeps submitting redemption codes that do not exist.

Codes carry 66 bits, so guessing is hopeless anyway; the throttle makes it also loud and slow.
Each actor (a merchant key, or one staff account behind the bot) has a window of failures: past
``SLOW_AFTER`` each further failure costs an exponentially growing wait, and past ``LOCK_AFTER``
the actor is locked for ``LOCK_FOR``.

Every look-up is counted as a failure BEFORE the code is checked, atomically in the database
(the actor's row is locked: ``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), and
given back when the code turned out to exist. So however many attempts arrive at once, in
however many ledger processes, at most ``LOCK_AFTER`` codes per actor per window are ever
checked without being found (issue 14: 1,000 concurrent guesses had 1,006 checked when the
failure was recorded after the check).
"""

from __future__ import annotations

import datetime as dt
import logging
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

_t = CodeAttempt.metadata.tables[CodeAttempt.__tablename__]
_READ = Statement(
    select(_t.c.failures, _t.c.window_started_at, _t.c.locked_until).where(
        _t.c.principal == bindparam("actor")
    )
)
_LOCK = Statement(
    select(_t.c.failures, _t.c.window_started_at, _t.c.locked_until)
    .where(_t.c.principal == bindparam("actor"))
    .with_for_update()
)
_CREATE = Statement(
    lambda dialect: dialect_insert(dialect, _t)
    .values(
        principal=bindparam("actor"),
        failures=0,
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
    binding count is ``guess``'s."""
    now = ctx.now()
    row = await ctx.db.run_direct(lambda conn: _READ.first(conn, actor=actor), readonly=True)
    if row is None:
        return
    failures, started, until = row
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
    """One counted attempt: what the lock was before it and what it set, to give it back."""

    actor: str
    failures: int  # the count including this attempt
    locked_before: dt.datetime | None
    locked_set: dt.datetime | None


async def reserve(ctx: Ctx, actor: str) -> Reservation:
    """Count one attempt as a failure before the code is checked. Raises Throttled (429,
    ``retry_after`` seconds) when the actor is slowed or locked, or its window is full."""
    now = ctx.now()

    async def work(conn: Conn) -> Reservation | int:
        row = await _LOCK.first(conn, actor=actor)
        if row is None:
            await _CREATE.rows(conn, actor=actor, now=now)
            row = await _LOCK.first(conn, actor=actor)
            assert row is not None
        failures, started, until = row
        if now - started > WINDOW:
            failures, started = 0, now
        wait = _wait(until, now)
        if wait is None and failures >= LOCK_AFTER:
            wait = max(1, int((started + WINDOW - now).total_seconds()))
        if wait is not None:
            return wait
        failures += 1
        penalty = _penalty(failures)
        new_until = now + penalty if penalty else until
        await _SET.rows(conn, actor=actor, failures=failures, started=started, until=new_until)
        return Reservation(actor, failures, until, new_until)

    outcome = await ctx.db.run_direct(work)
    if isinstance(outcome, int):
        raise Throttled("too many unknown codes; wait before trying again", retry_after=outcome)
    return outcome


async def give_back(ctx: Ctx, reservation: Reservation) -> None:
    """The code existed: the attempt was no guess, so its count (and any lock it set) is undone.

    The lock is restored only if no attempt since has set another one."""
    actor = reservation.actor

    async def work(conn: Conn) -> None:
        row = await _LOCK.first(conn, actor=actor)
        if row is None:  # pragma: no cover - rows are never deleted
            return
        failures, started, until = row
        if until == reservation.locked_set:
            until = reservation.locked_before
        await _SET.rows(
            conn, actor=actor, failures=max(0, failures - 1), started=started, until=until
        )

    await ctx.db.run_direct(work)


@asynccontextmanager
async def guess(ctx: Ctx, actor: str, code: str) -> AsyncIterator[Reservation]:
    """Reserve an attempt around looking ``code`` up: a CodeNotFound leaves it counted, any
    other outcome gives it back. Raises Throttled before the body runs when refused."""
    reservation = await reserve(ctx, actor)
    try:
        yield reservation
    except CodeNotFound:
        log.warning(
            "unknown redemption code from %s (%d in window) code=%s",
            actor,
            reservation.failures,
            codes.mask(code),
        )
        raise
    except Exception:
        await give_back(ctx, reservation)
        raise
    await give_back(ctx, reservation)

