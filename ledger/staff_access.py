"""Who may act for a merchant, in which role, and taking that away (issue 11; DESIGN.md
"Merchants and their money", Roles).

A merchant has owners (or managers) and cashiers. Every call the bot makes for a person is
checked here against the database, never a cache, so a revocation holds at once in every ledger
process: the revoked person's very next call is refused with ``staff_revoked``.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from ledger import merchants
from ledger.context import Ctx
from ledger.errors import NotOwner, NotStaff, StaffNotFound, StaffRevoked
from ledger.models import Identity, StaffListOut, StaffMemberOut, StaffOut, StaffRole
from ledger.schema import Merchant, Staff, StaffInvite

OWNER: StaffRole = "owner"
CASHIER: StaffRole = "cashier"


def _role(value: str) -> StaffRole:
    return OWNER if value == OWNER else CASHIER


async def acting(
    ctx: Ctx, merchant_id: int, identity: Identity, *, owner: bool = False
) -> StaffOut:
    """The staff link of ``identity`` at ``merchant_id``, if it may act there now.

    Raises ``NotStaff`` (not staff there, or the merchant is inactive), ``StaffRevoked`` (with
    ``revoked_at``) and, when ``owner`` is asked for, ``NotOwner`` for a cashier.
    """
    async with ctx.db.read() as session:
        row = (
            await session.execute(
                select(
                    Staff.merchant_id, Staff.role, Staff.revoked_at, Staff.store_id, Merchant.name
                )
                .join(Merchant, Merchant.id == Staff.merchant_id)
                .where(
                    Staff.channel == identity.channel,
                    Staff.external_id == identity.external_id,
                    Merchant.active.is_(True),
                )
            )
        ).first()
    if row is None or row.merchant_id != merchant_id:
        raise NotStaff("not staff of this merchant", merchant_id=merchant_id)
    if row.revoked_at is not None:
        raise StaffRevoked(
            "this person's staff access to the merchant was revoked",
            merchant_id=merchant_id,
            revoked_at=row.revoked_at.isoformat() + "Z",
        )
    if owner and row.role != OWNER:
        raise NotOwner("only an owner of the merchant may do this", merchant_id=merchant_id)
    return StaffOut(
        merchant_id=merchant_id,
        merchant_name=row.name,
        channel=identity.channel,
        external_id=identity.external_id,
        role=_role(row.role),
        store_id=row.store_id,
    )


async def invite_role(ctx: Ctx, merchant_id: int, requested: StaffRole | None) -> StaffRole:
    """The role an invite gives: the one asked for, else owner for a merchant's first invite
    (issue 11: "the first staff invite of a merchant makes an owner") and cashier after it."""
    if requested is not None:
        return requested
    async with ctx.db.read() as session:
        earlier = await session.scalar(
            select(func.count(StaffInvite.id)).where(StaffInvite.merchant_id == merchant_id)
        )
    return OWNER if not earlier else CASHIER


def _member(row: Staff) -> StaffMemberOut:
    return StaffMemberOut(
        channel=row.channel,
        external_id=row.external_id,
        role=_role(row.role),
        since=row.created_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        store_id=row.store_id,
    )


async def list_staff(ctx: Ctx, merchant_id: int, include_revoked: bool = False) -> StaffListOut:
    """Owners first, then cashiers, each oldest first; revoked links only when asked for."""
    query = select(Staff).where(Staff.merchant_id == merchant_id)
    if not include_revoked:
        query = query.where(Staff.revoked_at.is_(None))
    async with ctx.db.read() as session:
        await merchants.load(session, merchant_id)
        rows = list((await session.scalars(query)).all())
    rows.sort(key=lambda r: (r.role != OWNER, r.created_at, r.channel, r.external_id))
    return StaffListOut(merchant_id=merchant_id, staff=[_member(r) for r in rows])


async def revoke(
    ctx: Ctx,
    merchant_id: int,
    target: Identity,
    by: str,
    *,
    cashiers_only: bool,
) -> StaffMemberOut:
    """Revoke ``target``'s link to ``merchant_id``; revoking it again answers the first revocation.

    ``cashiers_only`` (an owner acting through the bot): an owner's link is revoked only by the
    alliance (admin, CLI) or the merchant's own key, so no owner can lock the others out.
    Raises ``StaffNotFound`` when the target is not linked to this merchant, ``NotOwner`` for an
    owner target when ``cashiers_only``.
    """
    now = ctx.now()
    async with ctx.db.write() as session:
        row = await session.scalar(
            select(Staff)
            .where(
                Staff.channel == target.channel,
                Staff.external_id == target.external_id,
                Staff.merchant_id == merchant_id,
            )
            .with_for_update()
        )
        if row is None:
            raise StaffNotFound("not staff of this merchant", merchant_id=merchant_id)
        if row.revoked_at is not None:
            return _member(row)
        if cashiers_only and row.role == OWNER:
            raise NotOwner(
                "an owner's access is revoked by the alliance or the merchant's own key",
                merchant_id=merchant_id,
            )
        await session.execute(
            update(Staff)
            .where(Staff.channel == row.channel, Staff.external_id == row.external_id)
            .values(revoked_at=now, revoked_by=by[:200])
        )
        row.revoked_at, row.revoked_by = now, by[:200]
        return _member(row)
