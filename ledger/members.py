"""Members and the chat identities that lead to them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import idempotency
from ledger.context import Ctx
from ledger.db import insert_on_conflict
from ledger.errors import IdentityInUse, InvalidRequest, MemberNotFound
from ledger.models import (
    AttachIdentityRequest,
    IdentityLinkOut,
    LinkIdentityRequest,
    MemberOut,
    ResolveMemberRequest,
    UpdateMemberRequest,
)
from ledger.schema import (
    IdentityLink,
    Member,
    MemberIdentity,
    MintLot,
    Purchase,
    Redemption,
    RedemptionCode,
    VoucherLot,
)


async def _find(ctx: Ctx, channel: str, external_id: str) -> Member | None:
    async with ctx.db.read() as session:
        return await session.scalar(
            select(Member)
            .join(MemberIdentity, MemberIdentity.member_id == Member.id)
            .where(MemberIdentity.channel == channel, MemberIdentity.external_id == external_id)
        )


def _out(member: Member, created: bool = False) -> MemberOut:
    return MemberOut(
        id=member.id, locale=member.locale, display_name=member.display_name, created=created
    )


async def resolve(ctx: Ctx, req: ResolveMemberRequest) -> MemberOut:
    """Find the member behind an identity, creating both on first contact.

    The common case (a known identity) is a read; two first contacts racing for the same identity
    both end up with the one member the database let win.
    """
    for _ in range(3):
        existing = await _find(ctx, req.channel, req.external_id)
        if existing is not None:
            return _out(existing)
        now = ctx.now()
        try:
            async with ctx.db.write() as session:
                member_id = await session.scalar(
                    insert(Member)
                    .values(
                        locale=req.locale,
                        display_name=req.display_name,
                        points=0,
                        vouchers_fen=0,
                        created_at=now,
                        last_active_at=now,
                    )
                    .returning(Member.id)
                )
                assert member_id is not None
                await session.execute(
                    insert(MemberIdentity).values(
                        channel=req.channel,
                        external_id=req.external_id,
                        member_id=member_id,
                        created_at=now,
                    )
                )
                member = await session.get_one(Member, member_id)
            return _out(member, created=True)
        except IntegrityError:
            continue
    raise AssertionError("identity neither found nor created")  # pragma: no cover


async def get(ctx: Ctx, member_id: int) -> MemberOut:
    async with ctx.db.read() as session:
        member = await session.get(Member, member_id)
    if member is None:
        raise MemberNotFound("no such member", member_id=member_id)
    return _out(member)


async def update_member(ctx: Ctx, member_id: int, req: UpdateMemberRequest) -> MemberOut:
    values = req.model_dump(exclude_none=True)
    async with ctx.db.write() as session:
        if values:
            await session.execute(update(Member).where(Member.id == member_id).values(**values))
        member = await session.get(Member, member_id)
        if member is None:
            raise MemberNotFound("no such member", member_id=member_id)
    return _out(member)


async def _add_identity(
    session: AsyncSession,
    identity: LinkIdentityRequest | AttachIdentityRequest,
    member_id: int,
    now: dt.datetime,
) -> int | None:
    """Add the identity for ``member_id`` unless it exists; returns who owns it now. A
    concurrent link of the same identity may commit first: then the one stored decides, as if
    it had been there when we looked."""
    await session.execute(
        insert_on_conflict(session, MemberIdentity)
        .values(
            channel=identity.channel,
            external_id=identity.external_id,
            member_id=member_id,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    return await session.scalar(
        select(MemberIdentity.member_id).where(
            MemberIdentity.channel == identity.channel,
            MemberIdentity.external_id == identity.external_id,
        )
    )


async def link_identity(ctx: Ctx, member_id: int, req: LinkIdentityRequest) -> MemberOut:
    """Attach another channel's account; an identity already owned by someone else is refused."""
    async with ctx.db.write() as session:
        member = await session.get(Member, member_id)
        if member is None:
            raise MemberNotFound("no such member", member_id=member_id)
        owner = await session.scalar(
            select(MemberIdentity.member_id).where(
                MemberIdentity.channel == req.channel,
                MemberIdentity.external_id == req.external_id,
            )
        )
        if owner is not None and owner != member_id:
            raise InvalidRequest("that identity belongs to another member")
        if owner is None:
            owner = await _add_identity(session, req, member_id, ctx.now())
            if owner != member_id:
                raise InvalidRequest("that identity belongs to another member")
    return _out(member)


ATTACH_SCOPE = "identity_links"


async def _unused(session: AsyncSession, member_id: int, now: dt.datetime) -> bool:
    """Whether the member has nothing of its own: no points, no vouchers, no purchase, voucher
    lot, mint lot or redemption ever, and no redemption code still live at ``now``. Such a
    member is what a first contact created (``resolve``), so moving its identity away takes
    nothing from anyone. The member's row is locked first: a purchase or release updating it
    waits, or is seen."""
    member = await session.get(Member, member_id, with_for_update=True)
    if member is None:
        return True
    if member.points or member.vouchers_fen:
        return False
    owned = [
        exists().where(table.member_id == member_id)
        for table in (Purchase, VoucherLot, MintLot, Redemption)
    ]
    # A code that can still be shown at a till must book on the member it was issued to.
    owned.append(
        exists().where(
            RedemptionCode.member_id == member_id,
            RedemptionCode.state == "live",
            RedemptionCode.expires_at > now,
        )
    )
    for clause in owned:
        if await session.scalar(select(clause)):
            return False
    return True


async def attach_identity(ctx: Ctx, req: AttachIdentityRequest) -> IdentityLinkOut:
    """Attach ``(channel, external_id)`` to ``member_id`` for good (issue 10: a person links
    their WeChat and Telegram identities to one member with a one-time code).

    The identity is added when the ledger does not know it; when its first contact already
    created a member that has nothing of its own (``_unused``), it moves to ``member_id`` and
    that empty member is left without it; the move is recorded in ``identity_links``. Keyed by
    ``idempotency_key``: a retry gets the first answer. Raises ``MemberNotFound`` (404) for an
    unknown ``member_id`` and ``IdentityInUse`` (409) when the identity's member has points,
    vouchers or history: members are never merged, since points cannot be transferred between
    members (DESIGN.md "Compliance").
    """
    fingerprint = idempotency.request_hash(req.model_dump(exclude={"idempotency_key"}))

    async def work(session: AsyncSession) -> IdentityLinkOut:
        now = ctx.now()
        claimed = await idempotency.claim(
            session, ATTACH_SCOPE, req.idempotency_key, fingerprint, now
        )
        if claimed.replay is not None:
            return IdentityLinkOut.model_validate(claimed.replay)
        if await session.get(Member, req.member_id) is None:
            raise MemberNotFound("no such member", member_id=req.member_id)
        where = (
            MemberIdentity.channel == req.channel,
            MemberIdentity.external_id == req.external_id,
        )
        owner = await session.scalar(
            select(MemberIdentity.member_id).where(*where).with_for_update()
        )
        moved_from: int | None = None
        already = owner == req.member_id
        if owner is None:
            owner = await _add_identity(session, req, req.member_id, now)
            if owner != req.member_id:  # a first contact won the race: ask again
                raise IdentityInUse("that identity was just taken", member_id=owner)
        elif owner != req.member_id:
            if not await _unused(session, owner, now):
                raise IdentityInUse(
                    "that identity's member has points, vouchers or history of its own",
                    member_id=owner,
                )
            await session.execute(
                update(MemberIdentity)
                .where(*where, MemberIdentity.member_id == owner)
                .values(member_id=req.member_id)
            )
            moved_from = owner
        if not already:
            session.add(
                IdentityLink(
                    channel=req.channel,
                    external_id=req.external_id,
                    member_id=req.member_id,
                    from_member_id=moved_from,
                    created_at=now,
                )
            )
        out = IdentityLinkOut(
            member_id=req.member_id,
            channel=req.channel,
            external_id=req.external_id,
            moved_from=moved_from,
            linked_at=now,
        )
        await idempotency.complete(session, claimed, out.model_dump(mode="json"))
        return out

    return await ctx.db.run_write(work)
