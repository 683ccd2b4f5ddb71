"""Slow down, then lock out, whoever keeps submitting redemption codes that do not exist.

Codes carry 66 bits, so guessing is hopeless anyway; the throttle makes it also loud and slow.
Each actor (a merchant key, or one staff account behind the bot) has a window of failures: past
``SLOW_AFTER`` each further failure costs an exponentially growing wait, and past ``LOCK_AFTER``
the actor is locked for ``LOCK_FOR``. Failures are recorded in their own transaction because the
failed redemption's transaction rolls back.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ledger import codes
from ledger.context import Ctx
from ledger.errors import Throttled
from ledger.schema import CodeAttempt

log = logging.getLogger(__name__)

WINDOW = dt.timedelta(minutes=15)
SLOW_AFTER = 5
LOCK_AFTER = 20
LOCK_FOR = dt.timedelta(minutes=15)


async def check(ctx: Ctx, actor: str) -> None:
    now = ctx.now()
    async with ctx.db.read() as session:
        until = await session.scalar(
            select(CodeAttempt.locked_until).where(CodeAttempt.principal == actor)
        )
    if until is not None and until > now:
        wait = max(1, int((until - now).total_seconds()))
        raise Throttled("too many unknown codes; wait before trying again", retry_after=wait)


def _penalty(failures: int) -> dt.timedelta | None:
    if failures >= LOCK_AFTER:
        return LOCK_FOR
    if failures > SLOW_AFTER:
        return dt.timedelta(seconds=min(2 ** (failures - SLOW_AFTER), LOCK_FOR.total_seconds()))
    return None


async def record_failure(ctx: Ctx, actor: str, code: str) -> None:
    now = ctx.now()
    for _ in range(2):
        try:
            async with ctx.db.write() as session:
                row = await session.get(CodeAttempt, actor, with_for_update=True)
                if row is None:
                    row = CodeAttempt(principal=actor, failures=0, window_started_at=now)
                    session.add(row)
                if now - row.window_started_at > WINDOW:
                    row.failures, row.window_started_at = 0, now
                row.failures += 1
                penalty = _penalty(row.failures)
                row.locked_until = now + penalty if penalty else None
                failures = row.failures
            break
        except IntegrityError:
            continue
    else:  # pragma: no cover
        return
    log.warning(
        "unknown redemption code from %s (%d in window) code=%s",
        actor,
        failures,
        codes.mask(code),
    )
