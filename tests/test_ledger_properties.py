"""Property tests: the money rules of ledger/money.py for any input, the nearby grid for any place,
and random sequences of purchases, redemptions, releases and the passing of time against a real
ledger (SQLite, and PostgreSQL with fewer examples): no balance ever negative, every journal entry
balanced, nothing minted beyond what the concession pays for, releases burning exactly 1 %."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from ledger import geo, verify
from ledger.context import Ctx
from ledger.db import Database
from ledger.errors import LedgerError
from ledger.models import MerchantIn, PurchaseRequest, RedeemRequest, ResolveMemberRequest
from ledger.money import Price, release_grant, split_purchase, voucher_cap, vouchers_applicable
from ledger.principal import SYSTEM
from ledger.rules import BP, Rules
from ledger.schema import JournalEntry, Member, Purchase, Release, VoucherLot
from ledger.service import LedgerService
from tests.databases import postgres_admin_url
from tests.ledger_support import FixedClock

# --- the pure rules ---------------------------------------------------------------------------

money = st.integers(min_value=0, max_value=10**13)
prices = st.builds(Price, money, money)


@st.composite
def rule_sets(draw: st.DrawFn) -> Rules:
    member = draw(st.integers(0, BP))
    merchant = draw(st.integers(0, BP - member))
    green = draw(st.integers(0, BP - member - merchant))
    return Rules(member_share_bp=member, merchant_share_bp=merchant, green_bonus_bp=green)


@given(
    amount=st.integers(1, 100_000_000),
    concession_bp=st.integers(100, 5000),
    green=st.booleans(),
    price=prices,
    rules=rule_sets(),
)
def test_minting_never_exceeds_the_concession(
    amount: int, concession_bp: int, green: bool, price: Price, rules: Rules
) -> None:
    rules.check()
    split = split_purchase(amount, concession_bp, green, price, rules)
    assert split.concession_fen == amount * concession_bp // BP <= amount
    member_bp = rules.member_share_bp + (rules.green_bonus_bp if green else 0)
    shares = ((split.member_points, member_bp), (split.merchant_points, rules.merchant_share_bp))
    for minted, share in shares:
        assert minted >= 0
        paid_for = split.concession_fen * share  # fen × BP the share pays for
        if price.pool_fen > 0 and price.points > 0:
            # minted × price ≤ share of the concession < (minted + 1) × price: floor, exactly
            assert minted * price.pool_fen * BP <= paid_for * price.points
            assert (minted + 1) * price.pool_fen * BP > paid_for * price.points
        else:
            assert minted == paid_for // BP
    total_bp = rules.member_share_bp + rules.merchant_share_bp + rules.green_bonus_bp
    value = price.value_of(split.member_points + split.merchant_points)
    assert value * BP <= split.concession_fen * total_bp


@given(bill=st.integers(1, 10**11), cap_bp=st.integers(0, BP), available=money)
def test_vouchers_never_exceed_the_cap_or_the_purse(
    bill: int, cap_bp: int, available: int
) -> None:
    applied = vouchers_applicable(bill, cap_bp, available)
    assert voucher_cap(bill, cap_bp) == bill * cap_bp // BP
    assert applied == min(available, bill * cap_bp // BP)
    assert 0 <= applied <= bill


@given(points=money, fraction_bp=st.integers(1, BP), price=prices)
def test_release_burns_the_fraction_at_the_price(
    points: int, fraction_bp: int, price: Price
) -> None:
    grant = release_grant(points, fraction_bp, price)
    burned = points * fraction_bp // BP
    if grant is None:
        assert burned == 0 or price.value_of(burned) == 0
        return
    assert grant.points_burned == burned <= points
    if price.pool_fen > 0 and price.points > 0:
        assert grant.vouchers_fen == burned * price.pool_fen // price.points
        assert grant.vouchers_fen * price.points <= burned * price.pool_fen
    else:
        assert grant.vouchers_fen == burned
    assert grant.vouchers_fen > 0


@given(price=prices, fen=money)
def test_price_round_trips_never_create_value(price: Price, fen: int) -> None:
    assert price.value_of(price.points_for(fen)) <= fen
    shown = Decimal(price.fen_per_point())
    exact = Decimal(price.pool_fen) / price.points if price.pool_fen and price.points else 1
    assert shown <= exact < shown + Decimal("0.0001")


@given(
    lat=st.floats(-80, 80),
    lon=st.floats(-175, 175),
    radius=st.integers(50, 20_000),
    bearing=st.floats(0, 2 * math.pi),
    share=st.floats(0, 1),
)
def test_nearby_grid_covers_the_circle(
    lat: float, lon: float, radius: int, bearing: float, share: float
) -> None:
    """Whatever lies within the radius is in one of the cells the search reads."""
    d = radius * share / geo.EARTH_RADIUS_M
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))
    l2 = l1 + math.atan2(
        math.sin(bearing) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    there = (math.degrees(p2), math.degrees(l2))
    assert geo.haversine_m(lat, lon, *there) <= radius + 1e-6
    cell = geo.cell_of(*there)
    assert any(lo <= cell <= hi for lo, hi in geo.cell_ranges(lat, lon, radius))


def test_rules_refuse_shares_over_the_whole() -> None:
    with pytest.raises(ValueError):
        Rules(member_share_bp=7000, merchant_share_bp=2000, green_bonus_bp=1001).check()


# --- sequences against a real ledger ----------------------------------------------------------

START = dt.datetime(2026, 3, 2, 2, 0)
RATES = ((1000, 2000), (500, 3000))  # (concession, voucher cap) of the two merchants
MEMBERS = 3


@dataclass
class Template:
    """A migrated ledger with two merchants and three members, copied for every example."""

    kind: str
    url: str
    admin: str | None = None

    async def build(self) -> None:
        service = await LedgerService.open(self.url, pool_size=4)
        try:
            for n, (concession, cap) in enumerate(RATES):
                await service.create_merchant(
                    SYSTEM,
                    MerchantIn(
                        name=f"店{n}",
                        category="grocery",
                        lat=30.0,
                        lon=120.0,
                        concession_bp=concession,
                        voucher_cap_bp=cap,
                    ),
                )
            for n in range(MEMBERS):
                await service.resolve_member(
                    SYSTEM, ResolveMemberRequest(channel="prop", external_id=str(n))
                )
        finally:
            await service.close()

    async def copy(self) -> str:
        if self.kind == "sqlite":
            source = Path(self.url.removeprefix("sqlite:///"))
            target = source.with_name(f"example-{uuid.uuid4().hex[:8]}.db")
            shutil.copyfile(source, target)
            return f"sqlite:///{target}"
        assert self.admin is not None
        name = f"{self.url.rpartition('/')[2]}_{uuid.uuid4().hex[:6]}"
        conn = await asyncpg.connect(self.admin)
        try:
            origin = self.url.rpartition("/")[2]
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{origin}"')
        finally:
            await conn.close()
        return f"{self.url.rpartition('/')[0]}/{name}"

    async def drop(self, url: str) -> None:
        if self.kind == "sqlite":
            await asyncio.to_thread(Path(url.removeprefix("sqlite:///")).unlink, missing_ok=True)
            return
        assert self.admin is not None
        conn = await asyncpg.connect(self.admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
        finally:
            await conn.close()


def built_sqlite_template(tmp_path_factory: pytest.TempPathFactory, prefix: str) -> Template:
    """A seeded SQLite ledger that each example copies (module-scoped fixtures share it)."""
    template = Template("sqlite", f"sqlite:///{tmp_path_factory.mktemp(prefix) / 'template.db'}")
    asyncio.run(template.build())
    return template


def built_postgres_template(prefix: str) -> Iterator[Template]:
    """A seeded PostgreSQL ledger each example clones as a template database; dropped after."""
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip("set GREENPOINTS_TEST_POSTGRES_URL to run the PostgreSQL tests")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    template = Template("postgres", f"{admin.rpartition('/')[0]}/{name}", admin)

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await template.build()

    asyncio.run(create())
    yield template
    asyncio.run(template.drop(template.url))


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return built_sqlite_template(tmp_path_factory, "prop")


@pytest.fixture(scope="module")
def postgres_template() -> Iterator[Template]:
    yield from built_postgres_template("gp_prop")


Action = tuple[Any, ...]
actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("buy"),
            st.integers(0, MEMBERS - 1),
            st.integers(0, len(RATES) - 1),
            st.integers(1, 3_000_000),
            st.booleans(),
        ),
        st.tuples(
            st.just("redeem"),
            st.integers(0, MEMBERS - 1),
            st.integers(0, len(RATES) - 1),
            st.integers(1, 400_000),
        ),
        st.tuples(st.just("release")),
        st.tuples(st.just("wait"), st.integers(1, 95)),
    ),
    min_size=1,
    max_size=8,
)


async def holdings(service: LedgerService) -> dict[int, tuple[int, int]]:
    async with service.ctx.db.read() as session:
        rows = await session.execute(select(Member.id, Member.points, Member.vouchers_fen))
        return {r.id: (r.points, r.vouchers_fen) for r in rows}


async def check_books(service: LedgerService) -> None:
    rules = service.ctx.rules
    async with service.ctx.db.read() as session:
        entries = (await session.scalars(select(JournalEntry))).all()
        purchases = (await session.scalars(select(Purchase))).all()
        lots = (await session.scalars(select(VoucherLot))).all()
    for e in entries:
        sums: dict[str, int] = {}
        for _account, unit, amount in e.postings:
            sums[unit] = sums.get(unit, 0) + amount
        assert set(sums.values()) <= {0}, (e.id, e.postings)
    for p in purchases:
        member_bp = rules.member_share_bp + (rules.green_bonus_bp if p.green_tags else 0)
        shares = ((p.member_points, member_bp), (p.merchant_points, rules.merchant_share_bp))
        for minted, share in shares:
            if p.price_pool_fen > 0 and p.price_points > 0:
                assert minted * p.price_pool_fen * BP <= p.concession_fen * share * p.price_points
            else:
                assert minted * BP <= p.concession_fen * share
    assert all(0 <= lot.remaining_fen <= lot.amount_fen for lot in lots)
    stats = await service.stats(SYSTEM)
    assert stats.pool_fen >= 0 and stats.points_outstanding >= 0
    report = await verify.verify(service.ctx)
    assert report.ok, report.problems


async def play(template: Template, steps: list[Action]) -> None:
    url = await template.copy()
    # The template was opened (migrated, shards made) once; each copy needs no upgrade.
    service = LedgerService(Ctx(Database(url, pool_size=4)))
    clock = FixedClock(START)
    service.ctx.clock = clock
    rules = service.ctx.rules
    try:
        merchants = [1, 2]
        members = sorted(await holdings(service))
        for n, step in enumerate(steps):
            before = await holdings(service)
            if step[0] == "buy":
                _, who, where, amount, green = step
                await service.record_purchase(
                    SYSTEM,
                    PurchaseRequest(
                        merchant_id=merchants[where],
                        member_id=members[who],
                        amount_fen=amount,
                        green_tags=["own_cup"] if green else [],
                        idempotency_key=f"prop-{n:04d}",
                    ),
                )
            elif step[0] == "redeem":
                _, who, where, bill = step
                code = await service.issue_code(SYSTEM, members[who])
                cap = bill * RATES[where][1] // BP
                applied = min(cap, code.vouchers_fen)  # what a preview shows, by the rule
                try:
                    receipt = await service.redeem(
                        SYSTEM,
                        RedeemRequest(
                            code=code.link_code,
                            merchant_id=merchants[where],
                            bill_fen=bill,
                            vouchers_applied_fen=applied,
                            pay_fen=bill - applied,
                            idempotency_key=f"prop-{n:04d}",
                        ),
                    )
                except LedgerError as exc:  # pragma: no cover - would be a bug
                    raise AssertionError(f"redeem refused: {exc.code}") from exc
                assert receipt.vouchers_applied_fen == min(cap, code.vouchers_fen)
                assert receipt.pay_fen == bill - receipt.vouchers_applied_fen
            elif step[0] == "release":
                stats = await service.stats(SYSTEM)
                day = service.ctx.today()
                result = await service.release(SYSTEM, day)
                async with service.ctx.db.read() as session:
                    row = await session.get_one(Release, day)
                    lots = await session.scalars(
                        select(VoucherLot).where(VoucherLot.release_date == day)
                    )
                    granted = {lot.member_id: lot.amount_fen for lot in lots}
                assert (row.price_pool_fen, row.price_points) == (
                    stats.pool_fen,
                    stats.points_outstanding,
                )
                price = Price(row.price_pool_fen, row.price_points)
                after = await holdings(service)
                for member_id, (points, _vouchers) in before.items():
                    grant = release_grant(points, rules.release_fraction_bp, price)
                    burned = points - after[member_id][0]
                    if grant is None:
                        assert burned == 0 and member_id not in granted
                    else:  # exactly the fraction, turned into its value at the day's price
                        assert burned == points * rules.release_fraction_bp // BP
                        assert granted[member_id] == price.value_of(burned) > 0
                assert result.members_granted == len(granted)
                clock.advance(days=1)
            else:
                clock.advance(days=step[1])
            for points, vouchers in (await holdings(service)).values():
                assert points >= 0 and vouchers >= 0
        last = await service.release(SYSTEM, service.ctx.today())
        clock.advance(days=rules.voucher_ttl_days)  # every voucher expires, back into the pool
        assert (await service.release(SYSTEM, last.date)).members_granted == last.members_granted
        assert sum(v for _p, v in (await holdings(service)).values()) == 0
        await check_books(service)
    finally:
        await service.close()
        await template.drop(url)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=actions)
def test_random_days_keep_the_books_sqlite(sqlite_template: Template, steps: list[Action]) -> None:
    asyncio.run(play(sqlite_template, steps))


@pytest.mark.postgres
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=actions)
def test_random_days_keep_the_books_postgres(
    postgres_template: Template, steps: list[Action]
) -> None:
    asyncio.run(play(postgres_template, steps))
