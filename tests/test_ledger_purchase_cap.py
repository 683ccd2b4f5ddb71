"""The per-day purchase cap (issue 11), SQLite and PostgreSQL: a member's purchases at one
merchant per local day, by count and by fen, booked up to exactly the cap and refused
(``purchase_cap_reached``, nothing changed) one past it; other merchants, the next local day
and retries of booked purchases are not affected; a redemption's paid part counts too."""

from __future__ import annotations

import datetime as dt

import pytest

from ledger.errors import PurchaseCapReached
from ledger.rules import Rules
from tests.conftest import World
from tests.ledger_support import FixedClock, buy, diff, pay_with_code, snapshot


def local_noon(world: World, clock: FixedClock) -> dt.datetime:
    """Move the clock to 12:00 of the local today and return the next local midnight (UTC)."""
    ctx = world.service.ctx
    start, end = ctx.day_bounds(ctx.today())
    clock.now = start + dt.timedelta(hours=12)
    return end


async def test_the_count_cap_books_exactly_the_cap(world: World, clock: FixedClock) -> None:
    s, shop, member = world.service, world.merchant_id, world.member_ids[0]
    s.ctx.rules = Rules(purchase_cap_count=3, points_hold_days=0)
    midnight = local_noon(world, clock)
    for n in range(3):
        await buy(s, shop, member, 1000 + n, f"cap-count-{n}")
    before = await snapshot(s)
    with pytest.raises(PurchaseCapReached) as refused:
        await buy(s, shop, member, 1000, "cap-count-3")
    assert refused.value.details == {"merchant_id": shop, "cap_count": 3}
    assert diff(before, await snapshot(s)) == []
    # A retry of a booked purchase is answered, not refused.
    again = await buy(s, shop, member, 1002, "cap-count-2")
    assert again.amount_fen == 1002
    await buy(s, world.other_merchant_id, member, 1000, "cap-count-other")  # another shop
    await buy(s, shop, world.member_ids[1], 1000, "cap-count-member")  # another member
    clock.now = midnight - dt.timedelta(microseconds=1)  # still the same local day
    with pytest.raises(PurchaseCapReached):
        await buy(s, shop, member, 1000, "cap-count-late")
    clock.now = midnight  # the next local day starts a new count
    await buy(s, shop, member, 1000, "cap-count-next-day")


async def test_the_fen_cap_books_a_bill_reaching_it_exactly(
    world: World, clock: FixedClock
) -> None:
    s, shop, member = world.service, world.merchant_id, world.member_ids[0]
    s.ctx.rules = Rules(purchase_cap_count=0, purchase_cap_fen=10_000, points_hold_days=0)
    local_noon(world, clock)
    await buy(s, shop, member, 6000, "cap-fen-1")
    with pytest.raises(PurchaseCapReached) as refused:
        await buy(s, shop, member, 4001, "cap-fen-2")
    assert refused.value.details["left_fen"] == 4000
    await buy(s, shop, member, 4000, "cap-fen-3")  # exactly the cap
    with pytest.raises(PurchaseCapReached):
        await buy(s, shop, member, 1, "cap-fen-4")


async def test_a_redemptions_paid_part_counts(world: World, clock: FixedClock) -> None:
    s, shop, member = world.service, world.merchant_id, world.member_ids[0]
    s.ctx.rules = Rules(purchase_cap_count=1, points_hold_days=0)
    local_noon(world, clock)
    await buy(s, shop, member, 1000, "cap-redeem-buy")
    with pytest.raises(PurchaseCapReached):
        await pay_with_code(s, shop, member, 2000, "cap-redeem-pay")
    await pay_with_code(s, world.other_merchant_id, member, 2000, "cap-redeem-other")
