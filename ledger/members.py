"""Members and the chat identities that lead to them."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from ledger.context import Ctx
from ledger.db import insert_on_conflict
from ledger.errors import InvalidRequest, MemberNotFound
from ledger.models import LinkIdentityRequest, MemberOut, ResolveMemberRequest, UpdateMemberRequest
from ledger.schema import Member, MemberIdentity


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
            # A concurrent link of the same identity may commit first: then the one stored
            # decides, as if it had been there when we looked.
            await session.execute(
                insert_on_conflict(session, MemberIdentity)
                .values(
                    channel=req.channel,
                    external_id=req.external_id,
                    member_id=member_id,
                    created_at=ctx.now(),
                )
                .on_conflict_do_nothing()
            )
            owner = await session.scalar(
                select(MemberIdentity.member_id).where(
                    MemberIdentity.channel == req.channel,
                    MemberIdentity.external_id == req.external_id,
                )
            )
            if owner != member_id:
                raise InvalidRequest("that identity belongs to another member")
    return _out(member)
