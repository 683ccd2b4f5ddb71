"""What was previewed is what is booked (issue 11): a redemption carries the figures the cashier
read out, and the ledger refuses it with ``amounts_changed`` — changing nothing — when a release
or an expiry between preview and confirm would make it book others. Both transports, both
databases; the expected figures come from the member's balance and the 20 % cap, not from the
code under test."""

from __future__ import annotations

import datetime as dt

import pytest

from ledger.service import LedgerService
from ledger_client import errors
from tests.conftest import Clients, World
from tests.ledger_support import FixedClock, diff, snapshot

BILL = 100_000  # the cap is 20,000 fen: more than one day's vouchers, so every lot counts


async def test_a_release_between_preview_and_confirm_is_refused(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    shop, member = world.merchant_id, world.member_ids[0]
    merchant, bot, admin = clients.merchant, clients.bot, clients.admin
    await merchant.record_purchase(shop, member, 10_000_000, "preview-p1")
    ctx = clients_service(world).ctx
    today = ctx.today()
    await admin.release(today)
    held = (await bot.balance(member)).vouchers_fen
    assert 0 < held < BILL // 5
    # The preview two minutes before local midnight; the next day's release runs just after it,
    # while the code (5 minutes) is still live (a release date is never after the local today).
    tomorrow = today + dt.timedelta(days=1)
    clock.now = ctx.day_bounds(tomorrow)[0] - dt.timedelta(minutes=2)
    code = await bot.issue_code(member)
    shown = await merchant.preview_redemption(code.numeric_code, shop, BILL)
    assert (shown.vouchers_applied_fen, shown.pay_fen) == (held, BILL - held)

    clock.now += dt.timedelta(minutes=3)
    await admin.release(tomorrow)  # the issue's ":release"
    now_held = (await bot.balance(member)).vouchers_fen
    assert now_held > held
    before = await snapshot(clients_service(world))
    with pytest.raises(errors.AmountsChanged) as refused:
        await merchant.redeem(
            code.numeric_code,
            shop,
            BILL,
            "preview-r1",
            vouchers_applied_fen=shown.vouchers_applied_fen,
            pay_fen=shown.pay_fen,
        )
    assert (refused.value.vouchers_applied_fen, refused.value.pay_fen) == (
        now_held,
        BILL - now_held,
    )
    assert refused.value.status == 409
    assert diff(before, await snapshot(clients_service(world))) == []

    # The till shows the fresh preview; confirming that books exactly it, with the same key.
    fresh = await merchant.preview_redemption(code.numeric_code, shop, BILL)
    assert fresh.vouchers_applied_fen == now_held
    # The refusal's points are the fresh preview's (what the customer pays earns them, at
    # today's price, no green bonus on a redemption), not the old figures' or the bill's.
    assert refused.value.details["points_to_earn"] == fresh.points_to_earn
    assert fresh.points_to_earn != shown.points_to_earn
    receipt = await merchant.redeem(
        code.numeric_code,
        shop,
        BILL,
        "preview-r1",
        vouchers_applied_fen=fresh.vouchers_applied_fen,
        pay_fen=fresh.pay_fen,
    )
    assert (receipt.vouchers_applied_fen, receipt.pay_fen) == (now_held, BILL - now_held)
    assert (await bot.balance(member)).vouchers_fen == 0


async def test_a_lot_expiring_between_preview_and_confirm_is_refused(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    shop, member = world.merchant_id, world.member_ids[1]
    merchant, bot, admin = clients.merchant, clients.bot, clients.admin
    await merchant.record_purchase(shop, member, 10_000_000, "preview-p2")
    await admin.release(world.service.ctx.today())
    balance = await bot.balance(member)
    assert balance.nearest_expiry is not None and balance.vouchers_fen > 0
    clock.now = balance.nearest_expiry - dt.timedelta(minutes=2)
    code = await bot.issue_code(member)
    shown = await merchant.preview_redemption(code.link_code, shop, BILL)
    assert shown.vouchers_applied_fen == balance.vouchers_fen
    clock.advance(minutes=3)  # the lot is past its expiry; the code (5 minutes) is not
    before = await snapshot(clients_service(world))
    with pytest.raises(errors.AmountsChanged) as refused:
        await merchant.redeem(
            code.link_code,
            shop,
            BILL,
            "preview-r2",
            vouchers_applied_fen=shown.vouchers_applied_fen,
            pay_fen=shown.pay_fen,
        )
    assert (refused.value.vouchers_applied_fen, refused.value.pay_fen) == (0, BILL)
    assert diff(before, await snapshot(clients_service(world))) == []


async def test_figures_that_do_not_add_up_are_refused(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    shop, member = world.merchant_id, world.member_ids[2]
    code = await clients.bot.issue_code(member)
    with pytest.raises(errors.InvalidRequest):
        await clients.merchant.redeem(
            code.numeric_code, shop, 1000, "preview-r3", vouchers_applied_fen=0, pay_fen=999
        )
    receipt = await clients.merchant.redeem(
        code.numeric_code, shop, 1000, "preview-r3", vouchers_applied_fen=0, pay_fen=1000
    )
    assert receipt.pay_fen == 1000


def clients_service(world: World) -> LedgerService:
    return world.service
