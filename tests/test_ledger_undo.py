"""Undo a redemption (撤销核销, issue 11), both transports, SQLite and PostgreSQL: the round trip
leaves the member's points and vouchers (with their expiry), the pool, points in circulation,
the merchant's points and settlement, and ``verify`` exactly as before; who may undo and until
when; a second undo answers the first; undo racing a redeem of the same code."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from ledger import verify
from ledger.schema import MerchantBalance
from ledger.service import LedgerService
from ledger_client import errors
from tests.conftest import Clients, World
from tests.ledger_support import FixedClock

OWNER = ("telegram", "undo-owner")
CASHIER = ("telegram", "undo-cashier")
OTHER = ("telegram", "undo-other")
BILL = 10_000  # 20 % cap: 2,000 fen of vouchers applied


async def merchant_books(service: LedgerService, merchant_id: int) -> tuple[int, int]:
    """The merchant's points and settlement (fen), summed over its shard slices."""
    async with service.ctx.db.read() as session:
        row = (
            await session.execute(
                select(
                    func.coalesce(func.sum(MerchantBalance.points), 0),
                    func.coalesce(func.sum(MerchantBalance.settlement_fen), 0),
                ).where(MerchantBalance.merchant_id == merchant_id)
            )
        ).one()
    return int(row[0]), int(row[1])


async def setup(clients: Clients, world: World, clock: FixedClock) -> None:
    """Vouchers for member 0; an owner and two cashiers at the shop."""
    shop = world.merchant_id
    await clients.merchant.record_purchase(shop, world.member_ids[0], 10_000_000, "undo-buy-1")
    await clients.admin.release(world.service.ctx.today())
    for n, person in enumerate((OWNER, CASHIER, OTHER)):
        invite = await clients.merchant.create_staff_invite(
            shop, role="owner" if n == 0 else "cashier"
        )
        await clients.bot.redeem_staff_invite(invite.code, *person)


async def figures(clients: Clients, world: World, member: int) -> dict[str, Any]:
    balance = await clients.bot.balance(member)
    stats = await clients.admin.stats()
    return {
        "points": balance.points,
        "vouchers": balance.vouchers_fen,
        "expiry": (balance.nearest_expiry, balance.nearest_expiry_fen),
        "pool": stats.pool_fen,
        "circulating": stats.points_outstanding,
        "outstanding": stats.vouchers_outstanding_fen,
        "merchant": await merchant_books(world.service, world.merchant_id),
    }


async def redeem(clients: Clients, world: World, key: str, staff: tuple[str, str]) -> Any:
    code = await clients.bot.issue_code(world.member_ids[0])
    shown = await clients.bot.preview_redemption(code.numeric_code, world.merchant_id, BILL, staff)
    return code, await clients.bot.redeem(
        code.numeric_code,
        world.merchant_id,
        BILL,
        key,
        staff=staff,
        vouchers_applied_fen=shown.vouchers_applied_fen,
        pay_fen=shown.pay_fen,
    )


async def test_undo_round_trip_restores_every_balance(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    shop, member = world.merchant_id, world.member_ids[0]
    await setup(clients, world, clock)
    before = await figures(clients, world, member)
    _code, receipt = await redeem(clients, world, "undo-r-0001", CASHIER)
    assert receipt.vouchers_applied_fen == BILL // 5 and receipt.points_earned > 0
    assert (await clients.merchant.today(shop)).count == 1
    during = await figures(clients, world, member)
    assert during["vouchers"] == before["vouchers"] - BILL // 5
    assert during["merchant"][1] == before["merchant"][1] + BILL // 5  # owed to the merchant

    clock.advance(minutes=5)
    undone = await clients.bot.undo_redemption(receipt.redemption_id, shop, staff=CASHIER)
    assert (undone.vouchers_returned_fen, undone.points_taken_back) == (
        BILL // 5,
        receipt.points_earned,
    )
    assert undone.undone_by == f"staff:{CASHIER[0]}:{CASHIER[1]}"
    assert await figures(clients, world, member) == before
    # The till's day no longer counts it (found trying /undo then /today as a new user would).
    today = await clients.merchant.today(shop)
    assert (today.count, today.bill_fen, today.vouchers_fen) == (0, 0, 0)
    report = await verify.verify(world.service.ctx)
    assert report.ok, report.problems

    # Asked again — by anyone who may, even after the window — the first answer comes back.
    clock.advance(days=2)
    assert not undone.already
    again = await clients.merchant.undo_redemption(receipt.redemption_id, shop)
    assert again == undone.model_copy(update={"already": True})
    feed = await clients.admin.events(limit=1000)
    [told] = [e for e in feed.events if e.type == "voucher.redemption_undone"]
    assert (told.member_id, told.payload["vouchers_fen"], told.payload["points"]) == (
        member,
        BILL // 5,
        -receipt.points_earned,
    )


async def test_who_may_undo_and_until_when(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    shop = world.merchant_id
    await setup(clients, world, clock)
    # Local noon, so "the same local day" has hours left in it.
    local_noon = dt.datetime.combine(
        world.service.ctx.today(), dt.time(12), tzinfo=world.service.ctx.zone
    )
    clock.now = local_noon.astimezone(dt.UTC).replace(tzinfo=None)
    _code, first = await redeem(clients, world, "undo-r-0002", CASHIER)

    async def refused(staff: tuple[str, str] | None, reason: str) -> None:
        with pytest.raises(errors.UndoRefused) as caught:
            await (
                clients.bot.undo_redemption(first.redemption_id, shop, staff=staff)
                if staff
                else clients.merchant.undo_redemption(first.redemption_id, shop)
            )
        assert caught.value.reason == reason

    await refused(OTHER, "not_redeemed_by_you")
    clock.advance(minutes=16)
    await refused(CASHIER, "cashier_window_closed")
    with pytest.raises(errors.NotFound):
        await clients.admin.undo_redemption(first.redemption_id, world.other_merchant_id)
    with pytest.raises(errors.Forbidden):
        await clients.merchant.undo_redemption(first.redemption_id, world.other_merchant_id)
    by_owner = await clients.bot.undo_redemption(first.redemption_id, shop, staff=OWNER)
    assert by_owner.points_taken_back == first.points_earned

    _code, second = await redeem(clients, world, "undo-r-0003", CASHIER)
    clock.now = (local_noon + dt.timedelta(hours=12)).astimezone(dt.UTC).replace(tzinfo=None)
    with pytest.raises(errors.UndoRefused) as caught:
        await clients.bot.undo_redemption(second.redemption_id, shop, staff=OWNER)
    assert caught.value.reason == "window_closed"
    revoked = await clients.merchant.revoke_staff(shop, *CASHIER)
    assert revoked.revoked_at is not None
    with pytest.raises(errors.StaffRevoked):
        await clients.bot.undo_redemption(second.redemption_id, shop, staff=CASHIER)


async def test_undo_racing_a_redeem_of_the_same_code(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    shop, member = world.merchant_id, world.member_ids[0]
    await setup(clients, world, clock)
    before = await figures(clients, world, member)
    code, receipt = await redeem(clients, world, "undo-r-0004", CASHIER)
    shown = {"vouchers_applied_fen": receipt.vouchers_applied_fen, "pay_fen": receipt.pay_fen}
    outcomes = await asyncio.gather(
        clients.bot.undo_redemption(receipt.redemption_id, shop, staff=OWNER),
        clients.merchant.undo_redemption(receipt.redemption_id, shop),
        clients.merchant.redeem(code.numeric_code, shop, BILL, "undo-r-0005", **shown),
        clients.bot.redeem(code.link_code, shop, BILL, "undo-r-0004", staff=CASHIER, **shown),
        return_exceptions=True,
    )
    first, second, again, retried = outcomes
    assert not isinstance(first, BaseException) and not isinstance(second, BaseException)
    # One undo, one answer: whichever came second is told it was undone already.
    assert {first.already, second.already} == {False, True}
    same = {"already": False}
    assert first.model_copy(update=same) == second.model_copy(update=same)
    assert isinstance(again, errors.CodeUsed)  # the code stays used after its undo
    assert retried == receipt  # the till's retry still gets its receipt
    assert await figures(clients, world, member) == before
    report = await verify.verify(world.service.ctx)
    assert report.ok, report.problems
