"""When a notice may go out: at once, after the person's quiet hours, or in a digest.

The rule's source is DESIGN.md "Notices at the alliance's scale" and issue 12: receipts of what a
person just did go out at once; voucher grants are gathered into one digest per person per
period (weekly by default, the member may choose daily or off in /settings); expiry warnings are
gathered into one message; nothing non-urgent is sent in the person's local quiet hours
(21:00–08:00 by default) — it is deferred to their end, never dropped. When not everything can
go today (Telegram's rate, WeChat's daily template quota), the outbox's priorities put receipts
first, then expiry warnings, then digests, then announcements.

Every moment here is naive UTC (as the bot's tables store them); local times are computed in the
person's zone, or the alliance's (``GREENPOINTS_TIMEZONE``) where the bot knows none.
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.outbox import notices
from bot.storage import outbox

Period = Literal["daily", "weekly", "off"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "off")

URGENT = frozenset({notices.POINTS_EARNED, notices.VOUCHER_REDEEMED})
"""Receipts: what the person just did at a till; they are waiting for it, so it goes at once."""

GATHERED = {notices.VOUCHER_GRANTED: outbox.DIGEST, notices.VOUCHER_EXPIRING: outbox.EXPIRING}
"""Event kinds held and gathered into one message per person, with the priority it gets."""

WARNING_EVERY = 3  # days: a person's expiry warnings come on every third local day at most
EXPIRY_MARGIN = dt.timedelta(hours=12)
"""A warning goes on the person's next warning day (every ``WARNING_EVERY`` days, on a phase of
their own, when their quiet hours end), unless that is less than this before the first expiry it
names; then at once (out of quiet hours). The ledger emits a warning each day a member's next
lot enters its 3-day horizon; gathered this way a person gets one every few days, and the
alliance's warnings spread over the days instead of all falling on one."""

_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class QuietHours:
    """Local ``start`` to ``end`` (may cross midnight); ``start == end`` means none."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """``"21:00-08:00"``; raises ValueError for anything else (hours 0–23, minutes 0–59)."""
        match = _HOURS.match(text)
        if match is None:
            raise ValueError("must look like 21:00-08:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if max(h1, h2) > 23 or max(m1, m2) > 59:
            raise ValueError("hours are 0-23 and minutes 0-59")
        return cls(dt.time(h1, m1), dt.time(h2, m2))

    def contains(self, local: dt.time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight


def zone(name: str | None, fallback: str) -> ZoneInfo:
    """The person's zone if the bot knows a valid one, else the alliance's."""
    for candidate in (name, fallback):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("Asia/Shanghai")


def _local(moment: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC).astimezone(tz)


def _utc(local: dt.datetime) -> dt.datetime:
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def after_quiet(moment: dt.datetime, tz: ZoneInfo, quiet: QuietHours) -> dt.datetime:
    """``moment`` (naive UTC) if it is outside the quiet hours in ``tz``, else the local end of
    those quiet hours (the same day, or the next when they started before midnight)."""
    local = _local(moment, tz)
    if not quiet.contains(local.timetz().replace(tzinfo=None)):
        return moment
    end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= local:
        end = (local + dt.timedelta(days=1)).replace(
            hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0
        )
    # Built from the wall clock in ``tz`` so a DST change between now and then is honoured.
    return _utc(end.replace(tzinfo=None).replace(tzinfo=tz))


def digest_weekday(channel: str, address: str) -> int:
    """The local weekday (0 Monday … 6 Sunday) a person's weekly digest period ends on: spread
    evenly over the week by a stable hash of their chat, so one zone's millions of weekly
    digests are not all due the same morning (Telegram carries about 2.6 M a day)."""
    return phase(channel, address, 7)


def phase(channel: str, address: str, cycle: int) -> int:
    """A stable 0…cycle-1 per person (a hash of their chat): which day of a cycle is theirs."""
    return zlib.crc32(f"{channel}:{address}".encode()) % cycle


def warning_due(
    now: dt.datetime,
    expires: dt.datetime | None,
    tz: ZoneInfo,
    quiet: QuietHours,
    person_phase: int,
) -> dt.datetime:
    """When an expiry warning read at ``now`` is due (naive UTC; see ``WARNING_EVERY``)."""
    local_now = _local(now, tz)
    wake = quiet.end if quiet.start != quiet.end else dt.time(9, 0)
    for k in range(WARNING_EVERY + 1):
        day = local_now.date() + dt.timedelta(days=k)
        if (day.toordinal() + person_phase) % WARNING_EVERY:
            continue
        moment = _utc(dt.datetime.combine(day, wake, tzinfo=tz))
        if moment < now:
            continue
        if expires is None or moment <= expires - EXPIRY_MARGIN:
            return moment
        break
    return after_quiet(now, tz, quiet)


def period_end(
    moment: dt.datetime, period: Period, tz: ZoneInfo, weekday: int = 0
) -> dt.datetime:
    """The end (naive UTC) of the digest period that holds ``moment``: the next local midnight
    (daily), or the next local midnight that starts ``weekday`` (weekly; 0 is Monday). Raises
    ValueError for ``off``."""
    local = _local(moment, tz)
    if period == "daily":
        days = 1
    elif period == "weekly":
        days = (weekday - local.weekday() - 1) % 7 + 1
    else:
        raise ValueError("a digest that is off has no period")
    day = (local + dt.timedelta(days=days)).date()
    return _utc(dt.datetime.combine(day, dt.time(0, 0), tzinfo=tz))


def period_of(chosen: str | None, default: str) -> Period:
    """The person's digest period: their choice, else the deployment's default, else weekly."""
    for candidate in (chosen, default):
        for period in PERIODS:
            if candidate == period:
                return period
    return "weekly"


def due(
    kind: str,
    happened: dt.datetime,
    now: dt.datetime,
    *,
    period: Period,
    tz: ZoneInfo,
    quiet: QuietHours,
    weekday: int = 0,
    expires: dt.datetime | None = None,
    warning_phase: int = 0,
) -> dt.datetime | None:
    """When a notice of event ``kind`` that happened at ``happened`` may go out (naive UTC),
    read at ``now``; None when it is not sent at all (a grant while the person's digest is off).

    Receipts: now. Expiry warnings: ``warning_due`` (``expires``: the first expiry they warn
    of; ``warning_phase``: which of the days is the person's). Grants: the
    end of the digest period that holds ``happened`` (a weekly one ends on ``weekday``; a grant
    read late is not held past its period), then out of quiet hours.
    """
    if kind in URGENT:
        return now
    if kind == notices.VOUCHER_GRANTED:
        if period == "off":
            return None
        return after_quiet(max(period_end(happened, period, tz, weekday), now), tz, quiet)
    return warning_due(now, expires, tz, quiet, warning_phase)
