"""Insider limits (issue 11), both transports, SQLite and PostgreSQL: a member who is staff of a
merchant (through any of their chat identities) cannot redeem their own code there nor earn on
a purchase there — through the bot or the merchant's own key — and changes nothing trying; at
other merchants, and once the staff link is revoked, they are a customer like any other."""

from __future__ import annotations

import pytest

from ledger_client import errors
from tests.conftest import Clients, World
from tests.ledger_support import buy, diff, snapshot

STAFF = ("telegram", "insider-1")


async def test_staff_neither_redeem_their_own_code_nor_earn_at_their_merchant(
    clients: Clients, world: World
) -> None:
    shop, other = world.merchant_id, world.other_merchant_id
    bot, merchant, admin = clients.bot, clients.merchant, clients.admin
    cashier = await bot.resolve_member(*STAFF)  # the cashier is also a member, same account
    invite = await merchant.create_staff_invite(shop, role="cashier")
    await bot.redeem_staff_invite(invite.code, *STAFF)
    colleague = world.member_ids[0]
    code = await bot.issue_code(cashier.id)
    before = await snapshot(world.service)
    with pytest.raises(errors.InsiderRefused):
        await bot.preview_redemption(code.numeric_code, shop, 1000, staff=STAFF)
    with pytest.raises(errors.InsiderRefused):
        await bot.redeem(
            code.numeric_code, shop, 1000, "insider-r1", staff=STAFF,
            vouchers_applied_fen=0, pay_fen=1000,
        )
    with pytest.raises(errors.InsiderRefused):
        await merchant.record_purchase(shop, cashier.id, 5000, "insider-p1")
    with pytest.raises(errors.InsiderRefused):  # any colleague's till: still their merchant
        await bot.record_purchase(shop, cashier.id, 5000, "insider-p2", staff=STAFF)
    assert diff(before, await snapshot(world.service)) == []

    # Serving a customer, and buying elsewhere, work as ever.
    assert (await merchant.record_purchase(shop, colleague, 5000, "insider-p3")).member_points
    bought = await buy(world.service, other, cashier.id, 5000, "insider-p4")
    assert bought.member_points > 0
    # Revoked, the person is a customer of the shop again.
    await admin.revoke_staff(shop, *STAFF)
    assert (await merchant.record_purchase(shop, cashier.id, 5000, "insider-p5")).member_points
