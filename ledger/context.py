"""What every ledger operation needs: the database, the rules, the clock and the local zone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from ledger.db import Database
from ledger.rules import Rules


def utcnow() -> dt.datetime:
    """Naive UTC: both databases store it unchanged, so it hashes the same after a round trip."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class Ctx:
    db: Database
    rules: Rules = field(default_factory=Rules)
    clock: Callable[[], dt.datetime] = utcnow
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    def now(self) -> dt.datetime:
        return self.clock()

    def today(self) -> dt.date:
        return self.now().replace(tzinfo=dt.UTC).astimezone(self.zone).date()

    def day_bounds(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """A local calendar day as a naive-UTC half-open interval."""
        start = dt.datetime.combine(day, dt.time(), tzinfo=self.zone)
        end = start + dt.timedelta(days=1)
        return (
            start.astimezone(dt.UTC).replace(tzinfo=None),
            end.astimezone(dt.UTC).replace(tzinfo=None),
        )
