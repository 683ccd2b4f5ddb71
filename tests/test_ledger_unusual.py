"""Unusual purchase volume (issue 11), SQLite and PostgreSQL, both transports: a merchant's
local day is flagged above the floor and strictly above the multiple of the median of its own
trailing days (days without purchases count 0), exactly at the boundary not; the admin read and
the release's ``merchant.unusual_volume`` events name the same merchants."""

from __future__ import annotations

import datetime as dt

from ledger.models import MerchantIn
from ledger.principal import SYSTEM
from ledger.rules import Rules
from ledger.unusual import doubled_median, is_unusual
from tests.conftest import Clients, World
from tests.ledger_support import FixedClock, buy

RULES = Rules(
    purchase_cap_count=0,
    points_hold_days=0,
    unusual_volume_multiple_bp=50_000,  # 5×
    unusual_volume_floor_fen=100_000,
    unusual_volume_days=28,
)
USUAL = 100_000  # fen a day at the steady shop, for 27 of its 28 trailing days


def test_the_median_and_the_boundary_are_exact() -> None:
    assert doubled_median([]) == 0
    assert doubled_median([3, 1, 2]) == 4
    assert doubled_median([0, 0, 7, 9]) == 7
    assert not is_unusual(500_000, 2 * USUAL, 50_000, 100_000)  # exactly 5×
    assert is_unusual(500_001, 2 * USUAL, 50_000, 100_000)
    assert not is_unusual(100_000, 0, 50_000, 100_000)  # at the floor
    assert is_unusual(100_001, 0, 50_000, 100_000)


async def test_unusual_merchants_are_read_and_announced(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    s = world.service
    s.ctx.rules = RULES
    steady, newcomer = world.merchant_id, world.other_merchant_id
    quiet = (
        await s.create_merchant(
            SYSTEM, MerchantIn(name="小店", category="cafe", lat=30.23, lon=119.72)
        )
    ).id
    member = world.member_ids[0]
    day = s.ctx.today() - dt.timedelta(days=1)

    def at(d: dt.date, hours: float) -> None:
        clock.now = s.ctx.day_bounds(d)[0] + dt.timedelta(hours=hours)

    for back in range(28, 0, -1):
        if back == 14:
            continue  # a day without purchases counts 0
        at(day - dt.timedelta(days=back), 10)
        await buy(s, steady, member, USUAL, f"usual-{back:02d}")
    # The day: the steady shop at exactly 5× its median (not flagged) plus one fen (flagged),
    # booked at the first and the last moment of the local day; the newcomer above the floor
    # with no history; the quiet shop at the floor.
    at(day, 0)
    await buy(s, steady, member, 5 * USUAL, "day-steady-1")
    at(day, 0)
    await buy(s, quiet, member, 100_000, "day-quiet-1")
    clock.now = s.ctx.day_bounds(day)[1] - dt.timedelta(microseconds=1)
    await buy(s, newcomer, member, 100_001, "day-newcomer")
    read = await clients.admin.unusual_volume(day)
    assert [m.merchant_id for m in read.merchants] == [newcomer]
    assert read.merchants[0].median_fen == 0 and read.merchants[0].day_count == 1

    await buy(s, steady, member, 1, "day-steady-2")
    read = await clients.admin.unusual_volume(day)
    assert [(m.merchant_id, m.day_fen, m.day_count, m.median_fen) for m in read.merchants] == [
        (steady, 5 * USUAL + 1, 2, USUAL),
        (newcomer, 100_001, 1, 0),
    ]
    assert (await clients.bot.unusual_volume(day)) == read

    # The next day's release announces the day before, once.
    clock.now = s.ctx.day_bounds(day)[1] + dt.timedelta(hours=12)
    await clients.admin.release(s.ctx.today())
    await clients.admin.release(s.ctx.today())
    feed = (await s.events(SYSTEM, 0, 1000)).events
    alerts = [e for e in feed if e.type == "merchant.unusual_volume"]
    assert [(e.merchant_id, e.member_id, e.payload["date"]) for e in alerts] == [
        (steady, None, day.isoformat()),
        (newcomer, None, day.isoformat()),
    ]
    assert alerts[0].payload["day_fen"] == 5 * USUAL + 1
