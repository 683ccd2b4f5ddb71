"""Merchant staff: one-time invites that link a chat identity to a merchant."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import codes, merchants, stores
from ledger.context import Ctx
from ledger.db import insert_on_conflict
from ledger.errors import InvalidRequest, InviteExpired, InviteNotFound, InviteUsed
from ledger.models import InviteOut, RedeemInviteRequest, StaffOut, StaffRole, TodayOut
from ledger.schema import Merchant, Redemption, RedemptionUndo, Staff, StaffInvite, Store


async def create_invite(
    ctx: Ctx, merchant_id: int, role: StaffRole = "cashier", store_id: int | None = None
) -> InviteOut:
    """An invite for ``role``; a cashier's may name the store they will work at (None: the whole
    merchant). Raises ``MerchantNotFound``, ``StoreNotFound`` (not a store of this merchant) and
    ``InvalidRequest`` for an owner's invite naming a store (owners are merchant-wide, issue 11).
    """
    if role == "owner" and store_id is not None:
        raise InvalidRequest("owners are merchant-wide: an owner's invite names no store")
    code = codes.new_invite_code()
    now = ctx.now()
    expires = now + dt.timedelta(hours=ctx.rules.staff_invite_ttl_hours)
    async with ctx.db.write() as session:
        await merchants.load(session, merchant_id)
        if store_id is not None:
            await stores.check_belongs(session, merchant_id, store_id)
        session.add(
            StaffInvite(
                code_hash=codes.invite_hash(code),
                merchant_id=merchant_id,
                created_at=now,
                expires_at=expires,
                role=role,
                store_id=store_id,
            )
        )
    return InviteOut(
        code=code, merchant_id=merchant_id, expires_at=expires, role=role, store_id=store_id
    )


async def _store_name(session: AsyncSession, store_id: int | None) -> str | None:
    if store_id is None:
        return None
    return await session.scalar(select(Store.name).where(Store.id == store_id))


async def redeem_invite(ctx: Ctx, req: RedeemInviteRequest) -> StaffOut:
    """Link the identity to the invite's merchant; an invite works exactly once."""
    if not codes.is_invite_code(req.code):
        raise InviteNotFound("that is not a staff invite")
    now = ctx.now()
    async with ctx.db.write() as session:
        invite = await session.scalar(
            select(StaffInvite)
            .where(StaffInvite.code_hash == codes.invite_hash(req.code))
            .with_for_update()
        )
        if invite is None:
            raise InviteNotFound("no such staff invite")
        if invite.used_at is not None:
            raise InviteUsed("this invite was already used")
        if invite.expires_at <= now:
            raise InviteExpired("this invite has expired")
        merchant = await merchants.load(session, invite.merchant_id)
        marked = await session.execute(
            update(StaffInvite)
            .where(StaffInvite.id == invite.id, StaffInvite.used_at.is_(None))
            .values(used_at=now, used_by=f"{req.channel}:{req.external_id}")
        )
        if getattr(marked, "rowcount", 0) != 1:
            raise InviteUsed("this invite was already used")
        stmt = insert_on_conflict(session, Staff).values(
            channel=req.channel,
            external_id=req.external_id,
            merchant_id=merchant.id,
            created_at=now,
            role=invite.role,
            store_id=invite.store_id,
        )
        # A new invite links a revoked person again, with the new invite's role.
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Staff.channel, Staff.external_id],
                set_={
                    "merchant_id": merchant.id,
                    "created_at": now,
                    "role": invite.role,
                    "store_id": invite.store_id,
                    "revoked_at": None,
                    "revoked_by": None,
                },
            )
        )
        store_name = await _store_name(session, invite.store_id)
    return StaffOut(
        merchant_id=merchant.id,
        merchant_name=merchant.name,
        channel=req.channel,
        external_id=req.external_id,
        role="owner" if invite.role == "owner" else "cashier",
        store_id=invite.store_id,
        store_name=store_name,
    )


async def lookup(
    ctx: Ctx, channel: str, external_id: str, include_revoked: bool = False
) -> StaffOut | None:
    """The person's staff link; a revoked one only with ``include_revoked`` (then it carries
    ``revoked_at``, so the bot can tell the person why they are refused)."""
    query = (
        select(Staff.merchant_id, Staff.role, Staff.revoked_at, Merchant.name, Store.id, Store.name)
        .join(Merchant, Merchant.id == Staff.merchant_id)
        .outerjoin(Store, Store.id == Staff.store_id)
        .where(
            Staff.channel == channel,
            Staff.external_id == external_id,
            Merchant.active.is_(True),
        )
    )
    if not include_revoked:
        query = query.where(Staff.revoked_at.is_(None))
    async with ctx.db.read() as session:
        row = (await session.execute(query)).first()
    if row is None:
        return None
    return StaffOut(
        merchant_id=row.merchant_id,
        merchant_name=row.name,
        channel=channel,
        external_id=external_id,
        role="owner" if row.role == "owner" else "cashier",
        revoked_at=row.revoked_at,
        store_id=row[4],
        store_name=row[5],
    )


async def today(
    ctx: Ctx, merchant_id: int, day: dt.date | None = None, store_id: int | None = None
) -> TodayOut:
    """A merchant's redemptions on a local day, of one store (``store_id``) or all of them;
    an undone redemption (撤销核销) is not counted: the till's day is what stands.

    Raises ``MerchantNotFound``, ``StoreNotFound`` (not a store of this merchant) and
    ``InvalidRequest`` for a day whose bounds are out of range.
    """
    day = day or ctx.today()
    try:
        start, end = ctx.day_bounds(day)
    except OverflowError:  # the first or last day there is: the other end is out of range
        raise InvalidRequest("date out of range", date=day.isoformat()) from None
    async with ctx.db.read() as session:
        await merchants.load(session, merchant_id)
        if store_id is not None:
            await stores.check_belongs(session, merchant_id, store_id)
        at_store = () if store_id is None else (Redemption.store_id == store_id,)
        row = (
            await session.execute(
                select(
                    func.count(Redemption.id),
                    func.coalesce(func.sum(Redemption.bill_fen), 0),
                    func.coalesce(func.sum(Redemption.vouchers_applied_fen), 0),
                    func.coalesce(func.sum(Redemption.paid_fen), 0),
                ).where(
                    Redemption.merchant_id == merchant_id,
                    Redemption.created_at >= start,
                    Redemption.created_at < end,
                    *at_store,
                    ~select(RedemptionUndo.redemption_id)
                    .where(RedemptionUndo.redemption_id == Redemption.id)
                    .exists(),
                )
            )
        ).one()
    return TodayOut(
        merchant_id=merchant_id,
        date=day,
        count=row[0],
        bill_fen=row[1],
        vouchers_fen=row[2],
        paid_fen=row[3],
        store_id=store_id,
    )
