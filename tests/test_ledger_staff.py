"""Roles and revocation (issue 11), through both transports on SQLite and PostgreSQL: the first
invite of a merchant makes an owner, owners invite cashiers, list and revoke them; a revoked
person's next call is refused with ``staff_revoked`` — also when the revocation is made by
another process (the CLI) on the same database, with no cache window."""

from __future__ import annotations

import pytest

from ledger_client import errors
from ledger_client.base import LedgerClient
from tests.conftest import Clients, Served, World
from tests.ledger_support import FixedClock, cli

OWNER = ("telegram", "owner-1")
CASHIER = ("telegram", "cashier-1")
OTHER = ("wechat", "cashier-2")


async def hire(clients: Clients, shop: int) -> None:
    """The merchant's key makes the first invite (an owner); the owner hires two cashiers."""
    merchant, bot = clients.merchant, clients.bot
    first = await merchant.create_staff_invite(shop)
    assert first.role == "owner"
    link = await bot.redeem_staff_invite(first.code, *OWNER)
    assert (link.role, link.revoked_at) == ("owner", None)
    for person in (CASHIER, OTHER):
        invite = await bot.create_staff_invite(shop, staff=OWNER)
        assert invite.role == "cashier"
        assert (await bot.redeem_staff_invite(invite.code, *person)).role == "cashier"


async def test_roles_invites_and_listing(clients: Clients, world: World) -> None:
    shop = world.merchant_id
    merchant, bot, admin = clients.merchant, clients.bot, clients.admin
    await hire(clients, shop)
    assert (await merchant.create_staff_invite(shop)).role == "cashier"  # not the first any more
    assert (await admin.create_staff_invite(shop, role="owner")).role == "owner"
    with pytest.raises(errors.NotOwner):
        await bot.create_staff_invite(shop, staff=CASHIER)
    with pytest.raises(errors.Forbidden):
        await bot.create_staff_invite(shop, role="owner", staff=OWNER)
    with pytest.raises(errors.InvalidRequest):  # the bot must say who it acts for
        await bot.create_staff_invite(shop)
    with pytest.raises(errors.NotStaff):
        await bot.create_staff_invite(world.other_merchant_id, staff=OWNER)

    listed = await bot.list_staff(shop, staff=OWNER)
    assert [(s.role, s.channel, s.external_id) for s in listed.staff] == [
        ("owner", *OWNER),
        ("cashier", *CASHIER),
        ("cashier", *OTHER),
    ]
    assert listed == await merchant.list_staff(shop) == await admin.list_staff(shop)
    with pytest.raises(errors.NotOwner):
        await bot.list_staff(shop, staff=CASHIER)
    with pytest.raises(errors.Forbidden):
        await merchant.list_staff(world.other_merchant_id)


async def test_revoked_staff_are_refused_at_once(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    shop, member = world.merchant_id, world.member_ids[0]
    merchant, bot, admin = clients.merchant, clients.bot, clients.admin
    await hire(clients, shop)
    code = await bot.issue_code(member)
    await bot.preview_redemption(code.numeric_code, shop, 1000, staff=CASHIER)

    revoked = await bot.revoke_staff(shop, *CASHIER, staff=OWNER)
    assert (revoked.role, revoked.revoked_at) == ("cashier", clock.now)
    assert revoked.revoked_by == f"staff:{OWNER[0]}:{OWNER[1]}"
    clock.advance(minutes=1)
    assert await bot.revoke_staff(shop, *CASHIER, staff=OWNER) == revoked  # a retry: same answer

    async def refused(call: object) -> errors.StaffRevoked:
        with pytest.raises(errors.StaffRevoked) as caught:
            await call  # type: ignore[misc]
        assert isinstance(caught.value, errors.NotStaff)  # older bots explain it as "not staff"
        return caught.value

    await refused(bot.preview_redemption(code.numeric_code, shop, 1000, staff=CASHIER))
    await refused(
        bot.redeem(
            code.numeric_code, shop, 1000, "revoked-r1", staff=CASHIER,
            vouchers_applied_fen=0, pay_fen=1000,
        )
    )
    await refused(bot.record_purchase(shop, member, 1000, "revoked-p1", staff=CASHIER))
    gone = await refused(bot.today(shop, staff=CASHIER))
    assert gone.details["merchant_id"] == shop
    assert await bot.staff_lookup(*CASHIER) is None
    seen = await bot.staff_lookup(*CASHIER, include_revoked=True)
    assert seen is not None and seen.revoked_at == revoked.revoked_at
    # The others work on; the revoked one is listed only on request.
    assert (await bot.preview_redemption(code.numeric_code, shop, 1000, staff=OTHER)).pay_fen
    assert [s.external_id for s in (await bot.list_staff(shop, staff=OWNER)).staff] == [
        OWNER[1],
        OTHER[1],
    ]
    everyone = await merchant.list_staff(shop, include_revoked=True)
    assert [s.revoked_at for s in everyone.staff] == [None, revoked.revoked_at, None]

    # An owner is not revoked through the bot, by another owner or by themself; the alliance
    # (admin) or the merchant's own key can.
    with pytest.raises(errors.NotOwner):
        await bot.revoke_staff(shop, *OWNER, staff=OWNER)
    with pytest.raises(errors.StaffNotFound):
        await bot.revoke_staff(shop, "telegram", "stranger", staff=OWNER)
    with pytest.raises(errors.StaffNotFound):
        await admin.revoke_staff(world.other_merchant_id, *OTHER)
    with pytest.raises(errors.NotOwner):
        await bot.revoke_staff(shop, *OTHER, staff=OTHER)  # a cashier revokes no one
    await admin.revoke_staff(shop, *OWNER)
    await refused(bot.list_staff(shop, staff=OWNER))

    # A new invite links a revoked person again, with that invite's role.
    again = await merchant.create_staff_invite(shop, role="cashier")
    back = await bot.redeem_staff_invite(again.code, *CASHIER)
    assert (back.role, back.revoked_at) == ("cashier", None)
    assert (await bot.today(shop, staff=CASHIER)).count == 0


async def test_revocation_by_another_process_holds_at_once(
    served: Served, world: World, database_url: str
) -> None:
    """The CLI, a process of its own on the same database, revokes; the served ledger's very
    next answer for that person is the refusal (nothing is cached between them)."""
    shop = world.merchant_id
    bot: LedgerClient = served.client("bot")
    merchant: LedgerClient = served.client("merchant")
    try:
        invite = await merchant.create_staff_invite(shop, role="cashier")
        await bot.redeem_staff_invite(invite.code, *CASHIER)
        assert (await bot.today(shop, staff=CASHIER)).count == 0
        run = await cli(
            database_url, "staff-revoke", "--merchant", str(shop),
            "--channel", CASHIER[0], "--external-id", CASHIER[1],
        )
        assert run.code == 0, run.err
        assert f"revoked cashier {CASHIER[0]}:{CASHIER[1]}" in run.out
        with pytest.raises(errors.StaffRevoked):
            await bot.today(shop, staff=CASHIER)
        listed = await cli(database_url, "staff-list", "--merchant", str(shop), "--all")
        assert listed.code == 0 and f"cashier  {CASHIER[0]}:{CASHIER[1]}  revoked" in listed.out
        owner = await cli(database_url, "staff-invite", "--merchant", str(shop), "--role", "owner")
        assert owner.code == 0 and owner.out.startswith("owner invite for")
        unknown = await cli(
            database_url, "staff-revoke", "--merchant", str(shop),
            "--channel", "telegram", "--external-id", "nobody",
        )
        assert unknown.code == 2 and "not staff of this merchant" in unknown.err
    finally:
        await bot.close()
        await merchant.close()
