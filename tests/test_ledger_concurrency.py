"""Concurrency, on SQLite and PostgreSQL: a code redeems once however many tills try it, many
purchases at once leave the books balanced, retries change nothing, one live code per member."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select

from ledger import verify
from ledger.models import EventOut, ResolveMemberRequest
from ledger.principal import SYSTEM, Principal
from ledger.schema import (
    Event,
    Member,
    Merchant,
    MerchantBalance,
    Purchase,
    Redemption,
    RedemptionCode,
    Release,
)
from ledger.service import LedgerService
from ledger_client import errors
from ledger_client.base import LedgerClient
from ledger_client.inprocess import InProcessLedgerClient
from ledger_client.models import PurchaseResult
from tests.conftest import Served, World
from tests.ledger_support import FixedClock, diff, expected_purchase, snapshot

T = TypeVar("T")


async def bounded(
    jobs: Sequence[Callable[[], Awaitable[T]]], width: int
) -> list[T | BaseException]:
    """Run every job, at most ``width`` at a time; exceptions are returned, not raised."""
    gate = asyncio.Semaphore(width)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True)


def as_merchant(served: Served, merchant_id: int) -> InProcessLedgerClient:
    return InProcessLedgerClient(served.service, Principal("merchant", merchant_id))


async def books(service: LedgerService) -> dict[str, Any]:
    async with service.ctx.db.read() as session:
        members = {r.id: r.points for r in await session.execute(select(Member.id, Member.points))}
        merchant_points = await session.scalar(select(func.sum(MerchantBalance.points)))
        purchases = (await session.scalars(select(Purchase))).all()
        rate_rows = await session.execute(select(Merchant.id, Merchant.concession_bp))
        rates = {r.id: r.concession_bp for r in rate_rows}
    stats = await service.stats(SYSTEM)
    return {
        "members": members,
        "merchant_points": int(merchant_points or 0),
        "purchases": list(purchases),
        "rates": rates,
        "stats": stats,
    }


async def assert_books_balance(service: LedgerService, answers: list[PurchaseResult]) -> None:
    """Each member holds what its purchases minted less what releases burned; the pool holds the
    concessions less the vouchers released; the points in circulation are everyone's points."""
    b = await books(service)
    assert len(b["purchases"]) == len(answers)
    held: dict[int, int] = defaultdict(int)
    for a in answers:
        held[a.member_id] += a.member_points
    feed = (await service.events(SYSTEM, 0, 1000)).events
    while len(feed) % 1000 == 0 and feed:
        more = (await service.events(SYSTEM, feed[-1].seq, 1000)).events
        if not more:
            break
        feed += more
    for e in feed:
        if e.type == "voucher.granted" and e.member_id is not None:
            held[e.member_id] -= e.payload["points_burned"]
    for member_id, points in b["members"].items():
        assert points == held.get(member_id, 0), member_id
    released = sum(r.vouchers_fen for r in await releases(service))
    stats = b["stats"]
    assert stats.pool_fen == sum(a.concession_fen for a in answers) - released
    assert stats.points_outstanding == sum(b["members"].values()) + b["merchant_points"]
    for row in b["purchases"]:  # each minted at the price it recorded, by the floor rules
        bp = b["rates"][row.merchant_id]
        want = expected_purchase(row.amount_fen, bp, row.price_pool_fen, row.price_points)
        assert (row.concession_fen, row.member_points, row.merchant_points) == (
            want.concession,
            want.member_points,
            want.merchant_points,
        )
    report = await verify.verify(service.ctx)
    assert report.ok, report.problems


async def releases(service: LedgerService) -> list[Release]:
    async with service.ctx.db.read() as session:
        return list((await session.scalars(select(Release))).all())


async def more_members(service: LedgerService, count: int) -> list[int]:
    return [
        (
            await service.resolve_member(
                SYSTEM, ResolveMemberRequest(channel="load", external_id=str(i))
            )
        ).id
        for i in range(count)
    ]


async def test_thousand_purchases_at_once(served: Served, world: World) -> None:
    """1,000 purchases, 32 at a time, a release part-way through, and a feed reader following
    along: the books balance, and the reader saw every event exactly once, in order."""
    service = served.service
    members = world.member_ids + await more_members(service, 47)
    shops = [as_merchant(served, world.merchant_id), as_merchant(served, world.other_merchant_id)]
    shop_ids = [world.merchant_id, world.other_merchant_id]
    rng = random.Random(1000)
    plan = [
        (n % 2, rng.choice(members), rng.randint(1, 5000) * 100 + rng.randint(0, 99))
        for n in range(1000)
    ]
    ticks: asyncio.Queue[int | None] = asyncio.Queue()  # every 100 done, for the reader
    part_way = asyncio.Event()
    done = 0

    async def buy(n: int, shop: int, member: int, amount: int) -> PurchaseResult:
        nonlocal done
        try:
            key = f"load-{n:05d}"
            return await shops[shop].record_purchase(shop_ids[shop], member, amount, key)
        finally:
            done += 1
            if done % 100 == 0:
                ticks.put_nowait(done)
            if done == 300:
                part_way.set()

    async def release_part_way() -> None:
        await part_way.wait()
        await service.release(SYSTEM)

    seen: list[EventOut] = []

    async def follow_feed() -> None:
        after = 0
        while True:
            tick = await ticks.get()
            while page := (await service.events(SYSTEM, after, 100)).events:
                seen.extend(page)
                after = page[-1].seq
            if tick is None:
                return

    jobs = [
        (lambda n=n, s=s, m=m, a=a: buy(n, s, m, a)) for n, (s, m, a) in enumerate(plan)
    ]
    reader = asyncio.create_task(follow_feed())
    results, _ = await asyncio.gather(bounded(jobs, 32), release_part_way())
    ticks.put_nowait(None)
    await reader
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    answers = [r for r in results if isinstance(r, PurchaseResult)]
    assert [a.amount_fen for a in answers] == [a for _s, _m, a in plan]
    (release,) = await releases(service)
    assert release.members_granted > 0 and release.state == "done"
    await assert_books_balance(service, answers)
    async with service.ctx.db.read() as session:
        all_ids = set((await session.scalars(select(Event.id))).all())
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert len({e.id for e in seen}) == len(seen) and {e.id for e in seen} == all_ids
    assert Counter(e.type for e in seen)["points.earned"] == 1000


async def test_purchases_over_http_at_once(served: Served, world: World) -> None:
    merchant = served.client("merchant")
    try:
        rng = random.Random(200)
        plan = [(rng.choice(world.member_ids), rng.randint(100, 90_000)) for _ in range(150)]
        jobs = [
            (
                lambda n=n, m=m, a=a: (
                    merchant.record_purchase(world.merchant_id, m, a, f"http-load-{n:04d}")
                )
            )
            for n, (m, a) in enumerate(plan)
        ]
        results = await bounded(jobs, 16)
    finally:
        await merchant.close()
    answers = [r for r in results if isinstance(r, PurchaseResult)]
    assert len(answers) == 150, [r for r in results if isinstance(r, BaseException)][:3]
    await assert_books_balance(served.service, answers)


async def vouchers_for(served: Served, world: World, member: int) -> int:
    shop = as_merchant(served, world.merchant_id)
    await shop.record_purchase(world.merchant_id, member, 5_000_000, "rich-member-1")
    await served.service.release(SYSTEM)
    return (await served.service.balance(SYSTEM, member)).vouchers_fen


async def test_one_code_sixty_four_tills(served: Served, world: World) -> None:
    member = world.member_ids[0]
    vouchers = await vouchers_for(served, world, member)
    assert vouchers > 2000
    code = await served.service.issue_code(SYSTEM, member)
    over_http = served.client("merchant")
    in_process = as_merchant(served, world.merchant_id)
    tills: list[LedgerClient] = [over_http, in_process]
    try:
        results = await asyncio.gather(
            *(
                tills[n % 2].redeem(
                    code.numeric_code if n % 3 else code.link_code,
                    world.merchant_id,
                    10_000,
                    f"till-{n:03d}",
                    vouchers_applied_fen=2000,  # 20 % of the bill: the member has more
                    pay_fen=8000,
                )
                for n in range(64)
            ),
            return_exceptions=True,
        )
    finally:
        await over_http.close()
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"Receipt": 1, "CodeUsed": 63}, kinds
    receipt = next(r for r in results if not isinstance(r, BaseException))
    assert receipt.vouchers_applied_fen == 2000
    balance = await served.service.balance(SYSTEM, member)
    assert balance.vouchers_fen == vouchers - 2000
    async with served.service.ctx.db.read() as session:
        assert await session.scalar(select(func.count(Redemption.id))) == 1
    report = await verify.verify(served.service.ctx)
    assert report.ok, report.problems


async def test_retries_replay_the_first_answer(
    served: Served, world: World, clock: FixedClock
) -> None:
    shop, member = world.merchant_id, world.member_ids[1]
    await vouchers_for(served, world, member)
    over_http = served.client("merchant")
    in_process = as_merchant(served, shop)
    try:
        bought = await asyncio.gather(
            *(
                (over_http, in_process)[n % 2].record_purchase(shop, member, 4321, "double-tap-1")
                for n in range(8)
            )
        )
        assert len(set(bought)) == 1
        code = await served.service.issue_code(SYSTEM, member)
        figures = {"vouchers_applied_fen": 1800, "pay_fen": 7200}  # 20 % of 9,000
        receipts = await asyncio.gather(
            *(
                (over_http, in_process)[n % 2].redeem(
                    code.link_code, shop, 9000, "double-tap-2", **figures
                )
                for n in range(8)
            )
        )
        assert len(set(receipts)) == 1 and receipts[0].vouchers_applied_fen == 1800
        tag_key = "tagged-purchase-1"
        tagged = await in_process.record_purchase(shop, member, 1234, tag_key, ["bags", "cups"])
        before = await snapshot(served.service)
        clock.advance(minutes=10)  # a retry later, the code long expired, gets the first answer
        assert await over_http.record_purchase(shop, member, 4321, "double-tap-1") == bought[0]
        assert await in_process.redeem(
            code.link_code, shop, 9000, "double-tap-2", **figures
        ) == receipts[0]
        # The same request spelled differently is still a retry: the code typed as digits,
        # the green tags in another order.
        assert await over_http.redeem(
            code.numeric_code, shop, 9000, "double-tap-2", **figures
        ) == receipts[0]
        assert await over_http.record_purchase(shop, member, 1234, tag_key, ["cups", "bags"]) == (
            tagged
        )
        for client in (over_http, in_process):
            with pytest.raises(errors.IdempotencyConflict):
                await client.record_purchase(shop, member, 4322, "double-tap-1")
            with pytest.raises(errors.IdempotencyConflict):
                await client.record_purchase(shop, world.member_ids[0], 4321, "double-tap-1")
            with pytest.raises(errors.IdempotencyConflict):
                await client.redeem(
                    code.link_code, shop, 9001, "double-tap-2", vouchers_applied_fen=1800,
                    pay_fen=7201,
                )
        assert diff(before, await snapshot(served.service)) == []
    finally:
        await over_http.close()
    async with served.service.ctx.db.read() as session:
        for amount in (4321, 1234):
            count = select(func.count(Purchase.id)).where(Purchase.amount_fen == amount)
            assert await session.scalar(count) == 1
        assert await session.scalar(select(func.count(Redemption.id))) == 1


async def test_concurrent_codes_leave_one_live(served: Served, world: World) -> None:
    member = world.member_ids[2]
    bot = served.client("bot")
    in_process = InProcessLedgerClient(served.service, Principal("bot"))
    try:
        issued = await asyncio.gather(
            *((bot, in_process)[n % 2].issue_code(member) for n in range(16)),
            return_exceptions=True,
        )
    finally:
        await bot.close()
    failed = [r for r in issued if isinstance(r, BaseException)]
    assert not failed, failed[:3]
    async with served.service.ctx.db.read() as session:
        states = Counter(
            (
                await session.scalars(
                    select(RedemptionCode.state).where(RedemptionCode.member_id == member)
                )
            ).all()
        )
    assert states == {"live": 1, "revoked": 15}
    merchant = as_merchant(served, world.merchant_id)
    usable = []
    for code in issued:
        try:
            await merchant.preview_redemption(code.numeric_code, world.merchant_id, 100)  # type: ignore[union-attr]
            usable.append(code)
        except errors.CodeRevoked:
            pass
    assert len(usable) == 1


async def test_redeem_racing_a_new_code(served: Served, world: World) -> None:
    """A till redeems the code while the member asks for a new one: one of them wins cleanly."""
    member, shop = world.member_ids[0], world.merchant_id
    till = as_merchant(served, shop)
    code = await served.service.issue_code(SYSTEM, member)
    outcomes: Counter[str] = Counter()
    for n in range(12):
        redeemed, fresh = await asyncio.gather(
            till.redeem(
                code.numeric_code, shop, 500, f"race-{n:04d}", vouchers_applied_fen=0, pay_fen=500
            ),
            served.service.issue_code(SYSTEM, member),
            return_exceptions=True,
        )
        assert not isinstance(fresh, BaseException), fresh
        assert not isinstance(redeemed, BaseException) or isinstance(
            redeemed, errors.CodeRevoked | errors.CodeUsed
        ), redeemed
        outcomes[type(redeemed).__name__] += 1
        code = fresh
    async with served.service.ctx.db.read() as session:
        live = select(func.count()).where(
            RedemptionCode.member_id == member, RedemptionCode.state == "live"
        )
        assert await session.scalar(live) == 1
        assert await session.scalar(select(func.count(Redemption.id))) == outcomes["Receipt"]
    report = await verify.verify(served.service.ctx)
    assert report.ok, report.problems


async def test_first_contacts_racing(served: Served) -> None:
    """The same chat account arriving twice at once becomes one member."""
    bot = served.client("bot")
    in_process = InProcessLedgerClient(served.service, Principal("bot"))
    try:
        found = await asyncio.gather(
            *((bot, in_process)[n % 2].resolve_member("telegram", "race-1") for n in range(12))
        )
    finally:
        await bot.close()
    assert len({m.id for m in found}) == 1
    assert sum(m.created for m in found) == 1
    assert (await served.service.stats(SYSTEM)).members == 4  # the world's three, and this one


async def test_linking_one_account_twice_at_once(served: Served, world: World) -> None:
    """One chat account linked to two members at once: one link wins, the other is refused with a
    reason (never a server error); linked twice to the same member at once: both succeed."""
    m0, m1, _m2 = world.member_ids
    bot = served.client("bot")
    in_process = InProcessLedgerClient(served.service, Principal("bot"))
    try:
        for n in range(4):
            contested = await asyncio.gather(
                bot.link_identity(m0, "wechat", f"contested-{n}"),
                in_process.link_identity(m1, "wechat", f"contested-{n}"),
                return_exceptions=True,
            )
            kinds = sorted(type(r).__name__ for r in contested)
            assert kinds == ["InvalidRequest", "Member"], contested
            owner = await bot.resolve_member("wechat", f"contested-{n}")
            assert owner.id in {r.id for r in contested if not isinstance(r, BaseException)}
            same = await asyncio.gather(
                bot.link_identity(m0, "wechat", f"same-{n}"),
                in_process.link_identity(m0, "wechat", f"same-{n}"),
                return_exceptions=True,
            )
            assert [getattr(r, "id", r) for r in same] == [m0, m0]
    finally:
        await bot.close()
