"""Release policies of issue 13 on SQLite and PostgreSQL: the share-value airdrop (共享购).

Expected figures are computed here from the purchases' amounts and the rule as DESIGN.md states
it (concession = amount × rate, share value = 10× / 2× the concession, each holder
floor(A × share / S)), not from the ledger's own functions.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import release_airdrop, verify
from ledger.models import ResolveMemberRequest
from ledger.principal import SYSTEM
from ledger.rules import Rules
from tests.conftest import World
from tests.ledger_support import BP, FixedClock, buy, diff, snapshot

AIRDROP = Rules(release_policy="airdrop", airdrop_daily_fen=100_000, release_batch_size=3)
SHOP_RATE_BP = 1000  # the world's shop concedes 10 %


@given(
    amount=st.integers(0, 10**12),
    shares=st.lists(st.integers(0, 10**12), min_size=1, max_size=40),
)
def test_airdrop_rounding_never_creates_value(amount: int, shares: list[int]) -> None:
    total = sum(shares)
    paid = [release_airdrop.payout(amount, s, total) for s in shares]
    assert sum(paid) <= amount  # the remainder stays in the pool
    for share, fen in zip(shares, paid, strict=True):
        exact = Fraction(amount * share, total) if total else Fraction(0)
        assert exact - 1 < fen <= exact  # nobody gets more than their exact proportion


async def scene(world: World, count: int) -> tuple[list[int], dict[int, int]]:
    """Members buying different amounts at the shop; returns them and each one's concessions."""
    s = world.service
    ids, conceded = [], {}
    for i in range(count):
        member = await s.resolve_member(
            SYSTEM, ResolveMemberRequest(channel="test", external_id=f"a{i}", display_name=None)
        )
        amount = 1_000 + 3_571 * i * i
        await buy(s, world.merchant_id, member.id, amount, f"airdrop-{i:03d}")
        ids.append(member.id)
        conceded[member.id] = amount * SHOP_RATE_BP // BP
    return ids, conceded


def expected(conceded: dict[int, int], amount: int) -> tuple[dict[int, int], int]:
    """Per member fen and the shop's fen for one airdrop day of ``amount``."""
    member_shares = {m: c * 10 for m, c in conceded.items()}
    shop_share = sum(conceded.values()) * 2
    total = sum(member_shares.values()) + shop_share
    members = {m: amount * sh // total for m, sh in member_shares.items()}
    return {m: f for m, f in members.items() if f > 0}, amount * shop_share // total


async def granted_events(world: World) -> list[Any]:
    page = await world.service.events(SYSTEM, 0, 1000)
    return [e for e in page.events if e.type == "voucher.granted"]


async def test_airdrop_divides_the_day_by_share_value(world: World, clock: FixedClock) -> None:
    s = world.service
    s.ctx.rules = AIRDROP
    ids, conceded = await scene(world, 11)
    want, shop_fen = expected(conceded, 100_000)
    before = await s.stats(SYSTEM)
    assert before.pool_fen > 100_000
    day = s.ctx.today()
    result = await s.release(SYSTEM, day)
    assert result.state == "done" and result.points_burned == 0
    assert result.members_granted == len(want) and result.merchants_granted == 1
    assert result.vouchers_fen == sum(want.values()) + shop_fen <= 100_000
    events = await granted_events(world)
    assert {e.member_id: e.payload["vouchers_fen"] for e in events} == want
    assert {e.payload["policy"] for e in events} == {"airdrop"}
    for m in ids:
        balance = await s.balance(SYSTEM, m, 0)
        assert balance.vouchers_fen == want.get(m, 0)
    after = await s.stats(SYSTEM)
    assert after.pool_fen == before.pool_fen - result.vouchers_fen  # the remainder stayed
    assert after.points_outstanding == before.points_outstanding
    # Idempotent per date: a second run reports the day and changes nothing.
    settled = await snapshot(s)
    assert (await s.release(SYSTEM, day)).vouchers_fen == result.vouchers_fen
    assert diff(settled, await snapshot(s)) == []
    report = await verify.verify(s.ctx)
    assert report.ok, report.problems


async def test_airdrop_resumes_after_a_crash(
    world: World, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = world.service
    s.ctx.rules = AIRDROP
    ids, conceded = await scene(world, 10)
    want, _shop = expected(conceded, 100_000)
    real = release_airdrop.member_batch
    calls = 0

    async def crash_on_third(*args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        calls += 1
        more = await real(*args, **kwargs)
        if calls == 3:
            raise RuntimeError("killed before the third batch's commit")
        return more

    monkeypatch.setattr(release_airdrop, "member_batch", crash_on_third)
    with pytest.raises(RuntimeError):
        await s.release(SYSTEM, s.ctx.today())
    monkeypatch.setattr(release_airdrop, "member_batch", real)
    # A purchase after the day started earns share value from tomorrow, not in the resumed run.
    await buy(s, world.merchant_id, ids[0], 5_000_000, "airdrop-late")
    await s.release(SYSTEM, s.ctx.today())
    events = await granted_events(world)
    assert Counter(e.member_id for e in events) == Counter(want.keys())
    assert {e.member_id: e.payload["vouchers_fen"] for e in events} == want
    report = await verify.verify(s.ctx)
    assert report.ok, report.problems
    clock.advance(days=1)  # tomorrow the late purchase counts, and the first buyer gets more
    await s.release(SYSTEM, s.ctx.today())
    latest = {e.member_id: e.payload["vouchers_fen"] for e in (await granted_events(world))[-10:]}
    assert latest[ids[0]] > want.get(ids[0], 0)
    report = await verify.verify(s.ctx)
    assert report.ok, report.problems
