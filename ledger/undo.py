"""Undo a redemption (撤销核销; issue 11, DESIGN.md "Merchants and their money", Undo and refund).

Nothing is deleted: a reversing journal entry posts the negation of the redemption's own entry
(vouchers back from the merchant's settlement to the member, the concession back out of the
pool, the points minted on the paid part burned), the lots spent get back exactly what was taken
from each, with their original expiry, and an event tells the member. The redemption's row is
locked first, so of two undos one does the work and the other answers with its result; the code
stays used, so a till racing the undo with the same code is told it was already redeemed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import events, journal, merchants, mint_lots
from ledger.context import Ctx
from ledger.errors import NotFound, UndoRefused
from ledger.journal import Posting
from ledger.models import UndoOut
from ledger.purchases import credit_merchant
from ledger.schema import (
    JournalEntry,
    Member,
    PurchaseRefund,
    Redemption,
    RedemptionLot,
    RedemptionUndo,
    VoucherLot,
)


def window_end(ctx: Ctx, redeemed_at: dt.datetime) -> dt.datetime:
    """Until when (naive UTC) an owner may undo: the end of the redemption's local day, or
    ``Rules.undo_window_hours`` after it when that is set."""
    hours = ctx.rules.undo_window_hours
    if hours:
        return redeemed_at + dt.timedelta(hours=hours)
    local_day = redeemed_at.replace(tzinfo=dt.UTC).astimezone(ctx.zone).date()
    return ctx.day_bounds(local_day)[1]


def _check_allowed(
    ctx: Ctx, redemption: Redemption, actor: str, owner: bool, now: dt.datetime
) -> None:
    """Owners (and merchant, admin keys) within the window; a cashier only their own redemption,
    within ``Rules.undo_cashier_minutes``. Raises ``UndoRefused`` with the reason."""
    end = window_end(ctx, redemption.created_at)
    if now >= end:
        raise UndoRefused(
            "the time to undo this redemption is over; record a refund instead",
            reason="window_closed",
            until=end.isoformat() + "Z",
        )
    if owner:
        return
    if redemption.staff != actor:
        raise UndoRefused(
            "a cashier may undo only their own redemptions; ask an owner",
            reason="not_redeemed_by_you",
        )
    limit = redemption.created_at + dt.timedelta(minutes=ctx.rules.undo_cashier_minutes)
    if now >= min(limit, end):
        raise UndoRefused(
            "the cashier's minutes to undo this are over; ask an owner",
            reason="cashier_window_closed",
            minutes=ctx.rules.undo_cashier_minutes,
        )


async def _original_postings(session: AsyncSession, redemption_id: int) -> list[Posting]:
    postings = await session.scalar(
        select(JournalEntry.postings).where(
            JournalEntry.kind == "redemption", JournalEntry.ref == f"redemption:{redemption_id}"
        )
    )
    if postings is None:  # pragma: no cover - every redemption posts one entry
        raise AssertionError(f"redemption {redemption_id} has no journal entry")
    return [(str(a), str(u), int(n)) for a, u, n in postings]


async def undo(
    ctx: Ctx, redemption_id: int, merchant_id: int, actor: str, *, owner: bool
) -> UndoOut:
    """Undo ``redemption_id`` made at ``merchant_id``; a second undo answers the first.

    ``actor``: who undoes it, as the redemption's ``staff`` names people (``staff:ch:id``) or a
    key's label; ``owner``: whether they act with an owner's powers. Raises ``NotFound`` (no
    such redemption at this merchant) and ``UndoRefused`` (``details["reason"]``).
    """

    async def work(session: AsyncSession) -> UndoOut:
        now = ctx.now()
        redemption = await session.scalar(
            select(Redemption)
            .where(Redemption.id == redemption_id, Redemption.merchant_id == merchant_id)
            .with_for_update()
        )
        if redemption is None:
            raise NotFound("no such redemption at this merchant", redemption_id=redemption_id)
        done = await session.get(RedemptionUndo, redemption_id)
        if done is not None:
            # The first answer, said to be one: a second undo changes nothing (issue 11).
            return UndoOut.model_validate({**done.response, "already": True})
        _check_allowed(ctx, redemption, actor, owner, now)
        if redemption.purchase_id is not None and await session.scalar(
            select(PurchaseRefund.id).where(PurchaseRefund.purchase_id == redemption.purchase_id)
        ):
            raise UndoRefused(
                "part of this bill was refunded already; refund the rest instead",
                reason="refunded",
            )
        member = await session.get_one(Member, redemption.member_id, with_for_update=True)
        spent = list(
            (
                await session.scalars(
                    select(RedemptionLot).where(RedemptionLot.redemption_id == redemption_id)
                )
            ).all()
        )
        applied = redemption.vouchers_applied_fen
        if sum(s.fen for s in spent) != applied:
            raise UndoRefused(
                "this redemption was made before undo existed; record a refund instead",
                reason="made_before_undo_existed",
            )
        if member.points < redemption.points_earned:
            raise UndoRefused(
                "the points earned on this bill were already turned into vouchers",
                reason="points_already_used",
            )
        original = await _original_postings(session, redemption_id)
        merchant_points = next(
            (-n for a, u, n in original if a == journal.merchant_points(merchant_id)), 0
        )
        for part in spent:
            await session.execute(
                update(VoucherLot)
                .where(VoucherLot.id == part.lot_id)
                .values(remaining_fen=VoucherLot.remaining_fen + part.fen)
            )
        await session.execute(
            update(Member)
            .where(Member.id == member.id)
            .values(
                vouchers_fen=Member.vouchers_fen + applied,
                points=Member.points - redemption.points_earned,
            )
        )
        if redemption.purchase_id is not None and redemption.points_earned:
            await mint_lots.take_back(
                session, member.id, redemption.purchase_id, redemption.points_earned
            )
        shard = journal.pick_shard(ctx.rules.shards)
        await credit_merchant(session, merchant_id, shard, merchant_points, -applied)
        merchant = await merchants.load(session, merchant_id)
        out = UndoOut(
            redemption_id=redemption_id,
            merchant_id=merchant_id,
            bill_fen=redemption.bill_fen,
            vouchers_returned_fen=applied,
            points_taken_back=redemption.points_earned,
            merchant_points_taken_back=-merchant_points,
            undone_at=now,
            undone_by=actor,
        )
        payload: dict[str, Any] = {
            "redemption_id": redemption_id,
            "vouchers_fen": applied,
            "points": -redemption.points_earned,
            "bill_fen": redemption.bill_fen,
            "merchant_name": merchant.name,
        }
        await events.emit(
            session,
            events.REDEMPTION_UNDONE,
            now=now,
            member_id=member.id,
            merchant_id=merchant_id,
            payload=payload,
        )
        session.add(
            RedemptionUndo(
                redemption_id=redemption_id,
                undone_at=now,
                undone_by=actor[:200],
                response=out.model_dump(mode="json"),
            )
        )
        await session.flush()
        await journal.post(
            session,
            shard=shard,
            kind="redemption_undo",
            ref=f"undo:{redemption_id}",
            postings=[(a, u, -n) for a, u, n in original],
            now=now,
        )
        return out

    return await ctx.db.run_write(work)
