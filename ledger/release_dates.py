"""Which dates a voucher release may run for (issue 12: twenty future dates took 18 % of a
member's points, because any date ran a full extra release).

A release converts a share of every holding, so each calendar day may have exactly one, and only
once it has begun:

- never a date after the local today (``Ctx.today``, the alliance's time zone);
- today;
- a past date only to catch up a day missed since the last finished release (a date after it),
  oldest first — once a later day has finished, the days before it are closed;
- any date that already has a release row: an unfinished one resumes, a finished one is
  reported again (and the day's expiry and notices run), granting nothing twice.

With no finished release yet, only today may start one.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.errors import ReleaseDateRefused
from ledger.schema import Release


async def check_new(session: AsyncSession, day: dt.date, today: dt.date) -> None:
    """Refuse starting a release for ``day`` (which has no release row yet) unless allowed above.

    Raises ``ReleaseDateRefused`` (HTTP 409) with ``today`` and the last finished date.
    """
    if day > today:
        raise ReleaseDateRefused(
            f"{day.isoformat()} is after today ({today.isoformat()}, local time): "
            "a release runs for today, or for a missed past day",
            date=day.isoformat(),
            today=today.isoformat(),
        )
    if day == today:
        return
    last = await session.scalar(
        select(func.max(Release.release_date)).where(Release.state == "done")
    )
    if last is None or day <= last:
        since = "no release has finished yet" if last is None else f"the last was {last}"
        raise ReleaseDateRefused(
            f"{day.isoformat()} is in the past and not a missed day ({since}): a past date may "
            "only catch up days after the last finished release, oldest first",
            date=day.isoformat(),
            today=today.isoformat(),
            last_finished=last.isoformat() if last is not None else None,
        )
