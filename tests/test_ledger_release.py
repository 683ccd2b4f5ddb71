"""The daily voucher release, expiry and expiring notices, on SQLite and PostgreSQL, with the
ledger's clock held still and moved by hand."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ledger import release_grants, releases, verify
from ledger.errors import ReleaseDateRefused
from ledger.models import EventOut, ResolveMemberRequest
from ledger.principal import SYSTEM
from ledger.rules import Rules
from ledger.schema import VoucherLot
from ledger.service import LedgerService
from tests.conftest import Served, World
from tests.ledger_support import (
    BP,
    FixedClock,
    buy,
    cli,
    diff,
    http,
    is_error,
    pay_with_code,
    snapshot,
)


async def feed(service: LedgerService, kind: str) -> list[EventOut]:
    page = await service.events(SYSTEM, 0, 1000)
    return [e for e in page.events if e.type == kind]


async def assert_verified(service: LedgerService) -> None:
    report = await verify.verify(service.ctx)
    assert report.ok, report.problems


async def test_a_day_releases_once(world: World, clock: FixedClock) -> None:
    s = world.service
    m0, m1, m2 = world.member_ids
    await buy(s, world.merchant_id, m0, 2_000_000, "release-p1")
    await buy(s, world.merchant_id, m1, 30_000, "release-p2")
    day = s.ctx.today()
    before = await s.stats(SYSTEM)
    held = {m: (await s.balance(SYSTEM, m, 0)).points for m in (m0, m1, m2)}
    first = await s.release(SYSTEM, day)
    want = {
        m: points * 100 // BP * before.pool_fen // before.points_outstanding
        for m, points in held.items()
    }
    assert first.state == "done" and first.members_granted == 2  # m2 holds nothing
    granted = await feed(s, "voucher.granted")
    assert sorted(e.member_id for e in granted) == [m0, m1]  # type: ignore[type-var]
    for e in granted:
        assert e.member_id is not None
        assert e.payload["vouchers_fen"] == want[e.member_id]
        assert e.payload["points_burned"] == held[e.member_id] * 100 // BP
        assert e.payload["release_date"] == day.isoformat()
    after_first = await snapshot(s)

    clock.advance(hours=3)
    again = await s.release(SYSTEM, day)
    assert again.model_dump(exclude={"expired_lots", "expiring_notices"}) == first.model_dump(
        exclude={"expired_lots", "expiring_notices"}
    )
    assert diff(after_first, await snapshot(s)) == []
    # Two runs of the next day at once (a cron job and an admin) still grant once per holder.
    clock.advance(days=1)
    next_day = day + dt.timedelta(days=1)
    runs = await asyncio.gather(*(s.release(SYSTEM, next_day) for _ in range(4)))
    assert {r.members_granted for r in runs} == {2}
    per_member = Counter(
        (e.member_id, e.payload["release_date"]) for e in await feed(s, "voucher.granted")
    )
    assert set(per_member.values()) == {1} and len(per_member) == 4
    async with s.ctx.db.read() as session:
        lots = (await session.scalars(select(VoucherLot))).all()
    assert Counter(lot.member_id for lot in lots) == {m0: 2, m1: 2}
    await assert_verified(s)


async def test_expiry_and_expiring_notice(world: World, clock: FixedClock) -> None:
    s = world.service
    m0, m1, _m2 = world.member_ids
    await buy(s, world.merchant_id, m0, 5_000_000, "expiry-p1")
    await buy(s, world.merchant_id, m1, 800_000, "expiry-p2")
    day = s.ctx.today()
    granted_at = clock.now
    await s.release(SYSTEM, day)
    lots = {m: (await s.balance(SYSTEM, m, 0)).vouchers_fen for m in (m0, m1)}
    assert all(lots.values())
    expires = granted_at + dt.timedelta(days=90)
    assert (await s.balance(SYSTEM, m0, 0)).nearest_expiry == expires
    # m0 spends part of the lot; only what is left can expire.
    receipt = await pay_with_code(s, world.merchant_id, m0, 5000, "expiry-r1")
    spent = receipt.vouchers_applied_fen
    assert spent == 1000

    async def jobs() -> tuple[int, int]:
        """Expiry and notices only: the day itself was released already."""
        result = await s.release(SYSTEM, day)
        return result.expired_lots, result.expiring_notices

    clock.now = expires - dt.timedelta(days=3, seconds=1)
    assert await jobs() == (0, 0)
    assert await feed(s, "voucher.expiring") == []
    clock.now = expires - dt.timedelta(days=3)
    assert await jobs() == (0, 2)
    notices = await feed(s, "voucher.expiring")
    assert {e.member_id: e.payload["vouchers_fen"] for e in notices} == {
        m0: lots[m0] - spent,
        m1: lots[m1],
    }
    assert {e.payload["expires_at"] for e in notices} == {expires.isoformat()}
    for later in (dt.timedelta(hours=1), dt.timedelta(days=2)):
        clock.now = expires - dt.timedelta(days=3) + later
        assert await jobs() == (0, 0)
    assert len(await feed(s, "voucher.expiring")) == 2

    clock.now = expires - dt.timedelta(seconds=1)
    assert await jobs() == (0, 0)
    before = await s.stats(SYSTEM)
    clock.now = expires
    assert (await s.balance(SYSTEM, m0, 0)).vouchers_fen == 0  # no longer spendable
    assert await jobs() == (2, 0)
    after = await s.stats(SYSTEM)
    returned = lots[m0] - spent + lots[m1]
    assert after.pool_fen == before.pool_fen + returned
    assert after.vouchers_outstanding_fen == before.vouchers_outstanding_fen - returned == 0
    assert after.points_outstanding == before.points_outstanding
    assert await jobs() == (0, 0)
    assert (await s.stats(SYSTEM)).pool_fen == after.pool_fen
    await assert_verified(s)


async def holders(world: World, count: int) -> list[int]:
    """``count`` more members, each with a different purchase (so different points)."""
    s = world.service
    ids = []
    for i in range(count):
        member = await s.resolve_member(
            SYSTEM, ResolveMemberRequest(channel="test", external_id=f"h{i}", display_name=None)
        )
        # Amounts from 1 yuan up: the smallest holders burn 0 points or get 0 fen and keep all.
        await buy(s, world.merchant_id, member.id, 100 + 7_919 * i * i, f"holder-{i}")
        ids.append(member.id)
    return ids


class Crash(Exception):
    pass


async def test_release_resumes_after_a_crash_mid_batch(
    world: World, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails after its statements ran rolls back whole; the rerun grants each
    holder exactly once and skips none, with the grant computed here from the rule itself."""
    s = world.service
    s.ctx.rules = Rules(release_batch_size=7)
    ids = await holders(world, 40)
    day = s.ctx.today()
    before = await s.stats(SYSTEM)
    held = {m: (await s.balance(SYSTEM, m, 0)).points for m in ids}
    want = {}
    for m, points in held.items():
        burned = points * 100 // BP
        fen = burned * before.pool_fen // before.points_outstanding
        if fen > 0:
            want[m] = (burned, fen)
    assert 30 < len(want) < len(ids)  # some holders are too small to be granted anything

    real = release_grants.grant_batch
    calls = 0

    async def crash_on_fourth(*args: Any, **kwargs: Any) -> release_grants.Batch | None:
        nonlocal calls
        calls += 1
        batch = await real(*args, **kwargs)
        if calls == 4:
            raise Crash("killed after the fourth batch's statements, before its commit")
        return batch

    monkeypatch.setattr(release_grants, "grant_batch", crash_on_fourth)
    with pytest.raises(Crash):
        await s.release(SYSTEM, day)
    partial = Counter(e.member_id for e in await feed(s, "voucher.granted"))
    assert len(partial) == 3 * 7 - sum(1 for m in sorted(ids)[:21] if m not in want)
    monkeypatch.setattr(release_grants, "grant_batch", real)

    done = await s.release(SYSTEM, day)
    assert done.state == "done" and done.members_granted == len(want)
    granted = await feed(s, "voucher.granted")
    assert Counter(e.member_id for e in granted) == Counter(want.keys())  # once, none skipped
    for e in granted:
        assert e.member_id is not None
        burned, fen = want[e.member_id]
        assert (e.payload["points_burned"], e.payload["vouchers_fen"]) == (burned, fen)
        assert e.payload["release_date"] == day.isoformat()
    for m in ids:
        balance = await s.balance(SYSTEM, m, 0)
        burned, fen = want.get(m, (0, 0))
        assert (balance.points, balance.vouchers_fen) == (held[m] - burned, fen)
    after = await s.stats(SYSTEM)
    members_fen = sum(f for _b, f in want.values())
    assert after.vouchers_outstanding_fen == members_fen
    # The shop's own points (all points that no member holds) are released into settlement.
    shop_burned = (before.points_outstanding - sum(held.values())) * 100 // BP
    shop_fen = shop_burned * before.pool_fen // before.points_outstanding
    assert done.vouchers_fen == members_fen + shop_fen
    assert after.pool_fen == before.pool_fen - members_fen - shop_fen
    await assert_verified(s)


# --- which dates may start a release (issue 12) -----------------------------------------------

JUNE_10_NOON = dt.datetime(2026, 6, 10, 4, 0)  # naive UTC: 12:00 in Shanghai


async def test_release_dates_are_guarded(world: World, clock: FixedClock) -> None:
    s = world.service
    clock.now = JUNE_10_NOON
    await buy(s, world.merchant_id, world.member_ids[0], 2_000_000, "dates-p1")
    june = {d: dt.date(2026, 6, d) for d in range(1, 20)}
    assert s.ctx.today() == june[10]

    async def refused(day: dt.date, why: str) -> None:
        before = await snapshot(s)
        with pytest.raises(ReleaseDateRefused) as caught:
            await s.release(SYSTEM, day)
        assert why in caught.value.message and caught.value.status == 409
        assert diff(before, await snapshot(s)) == []

    await refused(june[11], "after today")
    await refused(dt.date(9999, 12, 31), "after today")
    await refused(june[9], "no release has finished yet")  # the first release is today's
    first = await s.release(SYSTEM, june[10])
    assert first.members_granted == 1
    assert (await s.release(SYSTEM, june[10])).members_granted == 1  # reported, not rerun
    # Three days later: the missed days catch up, oldest first, each once.
    clock.now = JUNE_10_NOON + dt.timedelta(days=3)
    await refused(june[14], "after today")
    await refused(june[9], "the last was 2026-06-10")
    assert (await s.release(SYSTEM, june[11])).state == "done"
    assert (await s.release(SYSTEM, june[12])).state == "done"
    await refused(dt.date(1, 1, 1), "the last was 2026-06-12")
    for day in (10, 11, 12):  # done days are reported again, granting nothing
        assert (await s.release(SYSTEM, june[day])).members_granted == 1
    assert (await s.release(SYSTEM, june[13])).members_granted == 1
    # Skipping a day closes it: after the 15th finished, the 14th may no longer start.
    clock.now = JUNE_10_NOON + dt.timedelta(days=5)
    assert (await s.release(SYSTEM, june[15])).state == "done"
    await refused(june[14], "the last was 2026-06-15")
    granted = Counter(e.payload["release_date"] for e in await feed(s, "voucher.granted"))
    assert granted == {june[d].isoformat(): 1 for d in (10, 11, 12, 13, 15)}
    await assert_verified(s)


async def test_an_unfinished_past_release_resumes(
    world: World, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = world.service
    s.ctx.rules = Rules(release_batch_size=2)
    clock.now = JUNE_10_NOON
    ids = await holders(world, 6)
    real = release_grants.grant_batch

    async def crash(*args: Any, **kwargs: Any) -> release_grants.Batch | None:
        raise Crash("the machine went down")

    monkeypatch.setattr(release_grants, "grant_batch", crash)
    with pytest.raises(Crash):
        await s.release(SYSTEM, dt.date(2026, 6, 10))
    monkeypatch.setattr(release_grants, "grant_batch", real)
    clock.advance(days=2)  # found two days later: the 10th resumes, though no release finished
    resumed = await s.release(SYSTEM, dt.date(2026, 6, 10))
    assert resumed.state == "done"
    granted = [e.member_id for e in await feed(s, "voucher.granted")]
    assert sorted(granted) == sorted(granted_ids := set(granted)) and granted_ids <= set(ids)
    assert (await s.release(SYSTEM, dt.date(2026, 6, 11))).state == "done"  # then catches up


async def test_release_dates_over_http_and_cli(served: Served, database_url: str) -> None:
    admin_key = served.keys["admin"]
    async with aiohttp.ClientSession() as session:
        for date in ("9999-12-31", "2099-01-01", "0001-01-01"):
            answer = await http(
                session,
                "POST",
                f"{served.url}/v1/releases",
                key=admin_key,
                json_body={"date": date},
            )
            assert is_error(answer, 409, "release_date_refused") is None, answer.body
    run = await cli(database_url, "release", "--date", "2099-01-01")
    assert run.code == 2 and "is after today" in run.err, run
    helped = await cli(database_url, "release", "--help")
    assert "missed" in helped.out and "after today" in helped.out


async def test_expiry_and_notices_in_many_batches(world: World, clock: FixedClock) -> None:
    """Batches of two lots: each member is warned once for all their lots, every lot expires
    once, and the pool gets back exactly what was left."""
    s = world.service
    ids = await holders(world, 9)
    day = s.ctx.today()
    await s.release(SYSTEM, day)
    clock.advance(days=1)
    await s.release(SYSTEM, s.ctx.today())  # two lots for most members
    left = {m: (await s.balance(SYSTEM, m, 0)).vouchers_fen for m in ids}
    owners = {m for m, fen in left.items() if fen}
    clock.advance(days=88, hours=1)  # both lots within the 3-day notice window
    assert await releases.notify_expiring(s.ctx, batch=2) == len(owners)
    assert await releases.notify_expiring(s.ctx, batch=2) == 0
    notices = await feed(s, "voucher.expiring")
    assert {e.member_id: e.payload["vouchers_fen"] for e in notices} == {m: left[m] for m in owners}
    before = await s.stats(SYSTEM)
    clock.advance(days=2)
    async with s.ctx.db.read() as session:
        lots = len((await session.scalars(select(VoucherLot.id))).all())
    assert await releases.expire_lots(s.ctx, batch=2) == lots
    assert await releases.expire_lots(s.ctx, batch=2) == 0
    after = await s.stats(SYSTEM)
    assert after.pool_fen == before.pool_fen + sum(left.values())
    assert after.vouchers_outstanding_fen == 0
    await assert_verified(s)


# --- pruning the feed (issue 12: bounded databases) -------------------------------------------


async def test_pruning_keeps_the_feed_and_its_ids(world: World, clock: FixedClock) -> None:
    s = world.service
    m0, m1, _m2 = world.member_ids
    start = clock.now
    for n in range(40):  # one purchase a day for 40 days: one points.earned each
        clock.now = start + dt.timedelta(days=n)
        await buy(s, world.merchant_id, m0 if n % 2 else m1, 10_000 + n, f"prune-day-{n}")
    page = await s.events(SYSTEM, 0, 1000)
    assert len(page.events) == 40
    halfway = page.events[19].seq  # a reader that has read the first 20

    assert await s.prune_events(SYSTEM, 30) == 9  # created before day 39 - 30 = day 9
    kept = (await s.events(SYSTEM, 0, 1000)).events
    assert [e.id for e in kept] == [e.id for e in page.events[9:]]
    assert [e.id for e in (await s.events(SYSTEM, halfway, 1000)).events] == [
        e.id for e in page.events[20:]
    ]
    assert await s.prune_events(SYSTEM, 30) == 0

    # Long after: everything is old, yet the newest event stays, so ids are never handed out
    # again (a reader deduping by id would otherwise drop the next notices as repeats).
    clock.now = start + dt.timedelta(days=400)
    assert await s.prune_events(SYSTEM) == 30
    (newest,) = (await s.events(SYSTEM, 0, 1000)).events
    assert newest.id == page.events[-1].id
    await buy(s, world.merchant_id, m0, 5_000, "prune-after")
    fresh = (await s.events(SYSTEM, newest.seq, 1000)).events
    assert [e.type for e in fresh] == ["points.earned"]
    assert fresh[0].id > max(e.id for e in page.events)
    await assert_verified(s)
