"""The exit cap (封顶) of issue 13 on SQLite and PostgreSQL.

Expected figures are worked out here by hand from DESIGN.md's rules (a purchase at 10 % mints
the member ``member_share`` of the concession at the price before it; the release burns 1 % at
the day's price; a lot worth ``multiple`` times its mint value converts ``share`` of its value),
not taken from the ledger's own functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from ledger import exit_cap, verify
from ledger.context import Ctx
from ledger.db import Database
from ledger.models import PurchaseRequest
from ledger.principal import SYSTEM
from ledger.rules import Rules
from ledger.schema import Member, MintLot, Redemption, Release, VoucherLot
from ledger.service import LedgerService
from ledger_client.base import LedgerClient
from tests.conftest import Served, World
from tests.ledger_support import FixedClock, buy, diff, pay_with_code, snapshot
from tests.test_ledger_properties import (
    START,
    Template,
    built_postgres_template,
    built_sqlite_template,
    check_books,
)


async def granted(world: World) -> list[Any]:
    page = await world.service.events(SYSTEM, 0, 1000)
    return [e for e in page.events if e.type == "voucher.granted"]


async def lots(service: LedgerService) -> list[MintLot]:
    async with service.ctx.db.read() as session:
        return list((await session.scalars(select(MintLot).order_by(MintLot.id))).all())


# One member buys 1,000 yuan at the shop (10 %: concession 10,000 fen) while the price is still
# undefined (1 fen per point) and is minted member_share_bp of it as points; nobody else holds
# points, so the day's price is 10,000 fen / those points. At member_share 50.00 % the price is
# exactly 2 fen, twice the mint price; at 50.01 % it is 10,000/5,001, just below.
BOUNDARY = [
    # member_share_bp, multiple_bp, capped?
    pytest.param(5000, 20_000, True, id="exactly-2x"),
    pytest.param(5001, 20_000, False, id="just-below-2x"),
    pytest.param(5001, 19_996, True, id="at-1.9996x"),  # 10,000/5,001 = 1.99960008
    pytest.param(5001, 19_997, False, id="below-1.9997x"),
]


@pytest.mark.parametrize(("member_share_bp", "multiple_bp", "capped"), BOUNDARY)
async def test_cap_triggers_exactly_at_the_multiple(
    world: World, clock: FixedClock, member_share_bp: int, multiple_bp: int, capped: bool
) -> None:
    s = world.service
    s.ctx.rules = Rules(
        member_share_bp=member_share_bp,
        merchant_share_bp=0,
        exit_cap=True,
        exit_cap_multiple_bp=multiple_bp,
    )
    member = world.member_ids[0]
    await buy(s, world.merchant_id, member, 100_000, "exit-cap-0001")
    minted = 10_000 * member_share_bp // 10_000
    price = Fraction(10_000, minted)
    burned = minted // 100  # the day's 1 %
    fraction_fen = int(burned * price)
    left = minted - burned
    cap_fen = int(int(left * price) * Fraction(8, 10)) if capped else 0

    day = s.ctx.today()
    result = await s.release(SYSTEM, day)
    assert result.capped_points == (left if capped else 0)
    assert result.capped_fen == cap_fen
    assert result.points_burned == burned + (left if capped else 0)
    assert result.vouchers_fen == fraction_fen + cap_fen

    balance = await s.balance(SYSTEM, member, 0)
    assert balance.points == (0 if capped else left)
    assert balance.vouchers_fen == fraction_fen + cap_fen
    assert [(c.date, c.points, c.vouchers_fen) for c in balance.capped_exits] == (
        [(day, left, cap_fen)] if capped else []
    )
    events = await granted(world)
    assert sorted(
        (e.payload["points_burned"], e.payload["vouchers_fen"]) for e in events
    ) == sorted([(burned, fraction_fen)] + ([(left, cap_fen)] if capped else []))
    assert [e.payload.get("capped", False) for e in events] == [False] + ([True] if capped else [])
    stats = await s.stats(SYSTEM)
    assert stats.pool_fen == 10_000 - fraction_fen - cap_fen  # the other 20 % stayed
    assert [(lot.points_left, lot.capped_points, lot.capped_fen) for lot in await lots(s)] == [
        (0, left, cap_fen) if capped else (left, 0, 0)
    ]

    settled = await snapshot(s)
    again = await s.release(SYSTEM, day)  # idempotent per date
    assert (again.capped_points, again.capped_fen) == (result.capped_points, result.capped_fen)
    assert diff(settled, await snapshot(s)) == []
    report = await verify.verify(s.ctx)
    assert report.ok, report.problems


async def test_off_by_default_changes_nothing(world: World, clock: FixedClock) -> None:
    s = world.service
    s.ctx.rules = Rules(member_share_bp=5000, merchant_share_bp=0)  # price reaches 2x
    member = world.member_ids[0]
    await buy(s, world.merchant_id, member, 100_000, "exit-off-0001")
    result = await s.release(SYSTEM, s.ctx.today())
    assert (result.points_burned, result.vouchers_fen) == (50, 100)  # only the 1 %
    assert (result.capped_points, result.capped_fen) == (0, 0)
    balance = await s.balance(SYSTEM, member, 0)
    assert (balance.points, balance.vouchers_fen, balance.capped_exits) == (4950, 100, [])
    assert [lot.points_left for lot in await lots(s)] == [4950]  # lots still follow the burn
    assert all("capped" not in e.payload for e in await granted(world))
    report = await verify.verify(s.ctx)
    assert report.ok, report.problems


async def test_release_burns_lots_oldest_first(world: World, clock: FixedClock) -> None:
    s = world.service
    s.ctx.rules = Rules(member_share_bp=5000, merchant_share_bp=0, release_fraction_bp=5000)
    a, b = world.member_ids[:2]
    await buy(s, world.merchant_id, a, 1_000, "exit-fifo-001")  # concession 100: 50 points at 1 fen
    # Price 100/50 = 2: b's 1,000 fen concession mints 500 x 50 / 100 = 250 points.
    await buy(s, world.merchant_id, b, 10_000, "exit-fifo-002")
    # Price 1,100/300: a's 5,000 fen concession mints 2,500 x 300 / 1,100 = 681 points.
    await buy(s, world.merchant_id, a, 50_000, "exit-fifo-003")
    # The day burns half: a's 731 -> 365 burned, oldest lot first (all 50, then 315 of 681).
    await s.release(SYSTEM, s.ctx.today())
    assert [(lot.member_id, lot.points_minted, lot.points_left) for lot in await lots(s)] == [
        (a, 50, 0),
        (b, 250, 125),
        (a, 681, 366),
    ]
    report = await verify.verify(s.ctx)
    assert report.ok, report.problems


async def test_every_purchase_that_mints_makes_a_lot(world: World, clock: FixedClock) -> None:
    """Plain purchases and the paid part of a redemption alike, each at the price it was booked."""
    s = world.service
    a, b = world.member_ids[:2]
    first = await buy(s, world.merchant_id, a, 100_000, "exit-lots-001")
    second = await buy(s, world.merchant_id, b, 20_000, "exit-lots-002")
    await s.release(SYSTEM, s.ctx.today())
    receipt = await pay_with_code(s, world.merchant_id, a, 30_000, "exit-lots-003")
    assert receipt.vouchers_applied_fen > 0 and receipt.points_earned > 0
    rows = [(lot.member_id, lot.purchase_id, lot.points_minted) for lot in await lots(s)]
    async with s.ctx.db.read() as session:
        paid_part = await session.scalar(
            select(Redemption.purchase_id).where(Redemption.id == receipt.redemption_id)
        )
    assert rows == [
        (a, first.purchase_id, first.member_points),
        (b, second.purchase_id, second.member_points),
        (a, paid_part, receipt.points_earned),
    ]
    for member in (a, b):
        balance = await s.balance(SYSTEM, member, 0)
        assert sum(lot.points_left for lot in await lots(s) if lot.member_id == member) == (
            balance.points
        )
    report = await verify.verify(s.ctx)
    assert report.ok, report.problems


async def test_verify_names_lots_that_disagree_with_the_points(
    world: World, clock: FixedClock
) -> None:
    s = world.service
    member = world.member_ids[1]
    await buy(s, world.merchant_id, member, 100_000, "exit-verify-1")
    assert (await verify.verify(s.ctx)).ok
    async with s.ctx.db.write() as session:
        await session.execute(update(MintLot).values(points_left=MintLot.points_left + 1))
    report = await verify.verify(s.ctx)
    assert report.problems == [
        f"member {member}: mint lots hold 6001 points but the balance is 6000"
    ]


async def test_capped_release_resumes_after_a_crash(
    world: World, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = world.service
    s.ctx.rules = Rules(
        member_share_bp=5000, merchant_share_bp=0, exit_cap=True, release_batch_size=1
    )
    a, b, c = world.member_ids
    # a mints 5,000 points at 1 fen (price then 10,000 / 5,000 = 2); b's 1,000 fen concession
    # mints 500 / 2 = 250 points (price 11,000 / 5,250); c's 500 x 5,250 / 11,000 = 238 points.
    # The day's price is 12,000 / 5,488 = 2.19: a's lot is past 2x, b's and c's are not.
    await buy(s, world.merchant_id, a, 100_000, "exit-crash-01")
    await buy(s, world.merchant_id, b, 10_000, "exit-crash-02")
    await buy(s, world.merchant_id, c, 10_000, "exit-crash-03")
    real = exit_cap.convert
    calls = 0

    async def crash_on_second(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        done = await real(*args, **kwargs)
        if calls == 2:
            raise RuntimeError("killed before the second batch's commit")
        return done

    monkeypatch.setattr(exit_cap, "convert", crash_on_second)
    day = s.ctx.today()
    with pytest.raises(RuntimeError):
        await s.release(SYSTEM, day)
    monkeypatch.setattr(exit_cap, "convert", real)
    resumed = await s.release(SYSTEM, day)
    held = 5_000 - 50  # after the day's 1 %
    value = held * 12_000 // 5_488  # 10,823 fen
    assert (resumed.capped_points, resumed.capped_fen) == (held, value * 8 // 10)
    capped = [e for e in await granted(world) if e.payload.get("capped")]
    assert [(e.member_id, e.payload["points_burned"]) for e in capped] == [(a, held)]
    report = await verify.verify(s.ctx)
    assert report.ok, report.problems


async def test_balance_shows_capped_exits_to_the_bot(
    world: World, served: Served, bot_client: LedgerClient, clock: FixedClock
) -> None:
    s = served.service
    s.ctx.rules = Rules(member_share_bp=5000, merchant_share_bp=0, exit_cap=True)
    member = world.member_ids[0]
    await buy(s, world.merchant_id, member, 100_000, "exit-bal-0001")
    day = s.ctx.today()
    admin = served.client("admin")
    try:
        result = await admin.release(day)  # over HTTP, as an operator's tool runs it
    finally:
        await admin.close()
    assert (result.capped_points, result.capped_fen) == (4950, 7920)
    balance = await bot_client.balance(member, 0)
    assert [(c.date, c.points, c.vouchers_fen) for c in balance.capped_exits] == [(day, 4950, 7920)]
    assert balance.vouchers_fen == 100 + 7920


# --- properties: nobody gets more than the cap allows, every fen stays backed -----------------


@pytest.fixture(scope="module")
def cap_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return built_sqlite_template(tmp_path_factory, "cap")


@pytest.fixture(scope="module")
def cap_postgres_template() -> Iterator[Template]:
    yield from built_postgres_template("gp_cap")


days = st.lists(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(1, 2_000_000)),
        min_size=0,
        max_size=4,
    ),
    min_size=1,
    max_size=5,
)


async def play_capped(
    template: Template, plan: list[list[tuple[int, int, int]]], multiple: int, share: int
) -> None:
    url = await template.copy()
    service = LedgerService(Ctx(Database(url, pool_size=4)))
    clock = FixedClock(START)
    service.ctx.clock = clock
    service.ctx.rules = Rules(exit_cap=True, exit_cap_multiple_bp=multiple, exit_cap_share_bp=share)
    n = 0
    try:
        async with service.ctx.db.read() as session:
            members = list((await session.scalars(select(Member.id).order_by(Member.id))).all())
        for purchases in plan:
            for who, where, amount in purchases:
                n += 1
                await service.record_purchase(
                    SYSTEM,
                    PurchaseRequest(
                        merchant_id=where + 1,
                        member_id=members[who],
                        amount_fen=amount,
                        idempotency_key=f"exit-cap-{n:04d}",
                    ),
                )
            day = service.ctx.today()
            await service.release(SYSTEM, day)
            async with service.ctx.db.read() as session:
                row = await session.get_one(Release, day)
                price = (
                    Fraction(row.price_pool_fen, row.price_points)
                    if (row.price_pool_fen > 0 and row.price_points > 0)
                    else Fraction(1)
                )
                all_lots = (await session.scalars(select(MintLot))).all()
                held = dict((await session.execute(select(Member.id, Member.points))).all())
                voucher_lots = (
                    await session.scalars(select(VoucherLot).where(VoucherLot.release_date == day))
                ).all()
            left: dict[int, int] = {}
            for lot in all_lots:
                left[lot.member_id] = left.get(lot.member_id, 0) + lot.points_left
                mint = Fraction(lot.mint_pool_fen, lot.mint_points)
                if lot.capped_on == day:
                    # Converted: the lot had reached the cap, and paid no more than its share.
                    assert price >= mint * Fraction(multiple, 10_000)
                    value = lot.capped_points * price
                    assert 0 < lot.capped_fen <= value * Fraction(share, 10_000)
                    assert lot.capped_fen > value * Fraction(share, 10_000) - 2
                elif lot.points_left > 0:
                    # Not converted: its value is below the cap, or its share of the value in
                    # whole fen is not one fen.
                    value = lot.points_left * price
                    assert (
                        value < lot.points_left * mint * Fraction(multiple, 10_000)
                        or int(value) * share // 10_000 < 1
                    )
            assert all(left.get(m, 0) == p for m, p in held.items())  # lots track points exactly
            capped_by = {}
            for lot in all_lots:
                if lot.capped_on == day:
                    capped_by[lot.member_id] = capped_by.get(lot.member_id, 0) + lot.capped_fen
            event("a lot capped" if capped_by else "no lot capped")
            granted_by = {v.member_id: v.amount_fen for v in voucher_lots}
            assert all(granted_by.get(m, 0) >= fen for m, fen in capped_by.items())
            clock.advance(days=1)
        await check_books(service)  # journal balanced, verify exact: every fen backed
    finally:
        await service.close()
        await template.drop(url)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=days, multiple=st.integers(10_000, 30_000), share=st.integers(1, 10_000))
def test_cap_never_pays_more_than_allowed_sqlite(
    cap_sqlite_template: Template, plan: list[list[tuple[int, int, int]]], multiple: int, share: int
) -> None:
    asyncio.run(play_capped(cap_sqlite_template, plan, multiple, share))


@pytest.mark.postgres
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=days, multiple=st.integers(10_000, 30_000), share=st.integers(1, 10_000))
def test_cap_never_pays_more_than_allowed_postgres(
    cap_postgres_template: Template,
    plan: list[list[tuple[int, int, int]]],
    multiple: int,
    share: int,
) -> None:
    asyncio.run(play_capped(cap_postgres_template, plan, multiple, share))
