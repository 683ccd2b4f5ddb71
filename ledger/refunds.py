"""Refunds of purchases (issue 11; DESIGN.md "Merchants and their money", Undo and refund).

A refund of part or all of a purchase (or of the paid part of a redemption, which is a purchase
too) posts one reversing journal entry (kind ``refund``, ref ``refund:<id>``; the purchase's
own entry and row are never edited): the concession on the refunded part goes back out of the
pool to the merchant, and the points minted on it are taken back from the member (their mint
lot first, ``mint_lots.take_back``) and from the merchant.

The floor rule: what a purchase keeps after refunds totalling R of its amount A is, for its
concession (fen), member points and merchant points alike, ``floor(x × (A − R) / A)``; a
refund takes back the difference between what the purchase kept before it and after it. So a
purchase never keeps more than its share of what was not refunded, a full refund takes back
exactly everything, and refunds in any steps take back what one refund of their sum would.

Only inside the hold (``ledger.hold``): then every point to take back is still there and the
refund reverses exactly. After it, the refund is refused (``refund_after_hold``), as is one
for more than is left of the purchase (``over_refund``) or of a redemption already undone
(``redemption_undone``). The purchase's row is locked first, so refunds of one purchase take
turns; a retry with the same idempotency key gets the first answer.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import events, hold, idempotency, journal, merchants, mint_lots
from ledger.context import Ctx
from ledger.errors import NotFound, RefundRefused
from ledger.journal import FEN, POINTS, Posting
from ledger.models import RefundOut, RefundRequest
from ledger.purchases import merchant_credit
from ledger.schema import (
    Member,
    MerchantBalance,
    MintLot,
    Purchase,
    PurchaseRefund,
    Redemption,
    RedemptionUndo,
)

KIND = "refund"


def kept(total: int, amount_fen: int, refunded_fen: int) -> int:
    """What of ``total`` (fen or points) a purchase of ``amount_fen`` keeps once
    ``refunded_fen`` of it were refunded: the floor of its share of the rest."""
    return total * (amount_fen - refunded_fen) // amount_fen


def taken_back(total: int, amount_fen: int, before_fen: int, after_fen: int) -> int:
    """What a refund moving the purchase's refunded fen from ``before_fen`` to ``after_fen``
    takes back of ``total``."""
    return kept(total, amount_fen, before_fen) - kept(total, amount_fen, after_fen)


def postings(r: PurchaseRefund) -> list[Posting]:
    """The journal entry of refund ``r``: the purchase's own postings reversed, for its part."""
    moved: list[Posting] = [
        (journal.CONCESSIONS, FEN, r.concession_fen),
        (journal.POOL, FEN, -r.concession_fen),
        (journal.ISSUANCE, POINTS, r.member_points + r.merchant_points),
        (journal.member_points(r.member_id), POINTS, -r.member_points),
        (journal.merchant_points(r.merchant_id), POINTS, -r.merchant_points),
    ]
    return [p for p in moved if p[2] != 0]


def _fingerprint(purchase_id: int, req: RefundRequest) -> str:
    request = req.model_dump(mode="json", exclude={"idempotency_key"})
    return idempotency.request_hash({"purchase_id": purchase_id, **request})


async def _refused_if_undone(session: AsyncSession, purchase_id: int) -> None:
    undone = await session.scalar(
        select(RedemptionUndo.redemption_id)
        .join(Redemption, Redemption.id == RedemptionUndo.redemption_id)
        .where(Redemption.purchase_id == purchase_id)
    )
    if undone is not None:
        raise RefundRefused(
            "this purchase's redemption was undone; nothing is left to refund",
            reason="redemption_undone",
            redemption_id=int(undone),
        )


async def _refunded(session: AsyncSession, purchase_id: int) -> tuple[int, int, int, int]:
    """(fen, concession fen, member points, merchant points) the purchase's refunds took."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(PurchaseRefund.amount_fen), 0),
                func.coalesce(func.sum(PurchaseRefund.concession_fen), 0),
                func.coalesce(func.sum(PurchaseRefund.member_points), 0),
                func.coalesce(func.sum(PurchaseRefund.merchant_points), 0),
            ).where(PurchaseRefund.purchase_id == purchase_id)
        )
    ).one()
    fen, concession, member_points, merchant_points = (int(x) for x in row)
    return fen, concession, member_points, merchant_points


async def _check_points_there(
    session: AsyncSession, p: Purchase, member_points: int, merchant_points: int
) -> None:
    """Inside the hold the points are there; refuse rather than take back what is not."""
    member = await session.get_one(Member, p.member_id, with_for_update=True)
    lot = await session.scalar(
        select(func.coalesce(func.sum(MintLot.points_left), 0)).where(
            MintLot.member_id == p.member_id, MintLot.purchase_id == p.id
        )
    )
    merchant = await session.scalar(
        select(func.coalesce(func.sum(MerchantBalance.points), 0)).where(
            MerchantBalance.merchant_id == p.merchant_id
        )
    )
    if (
        member.points < member_points
        or int(lot or 0) < member_points
        or int(merchant or 0) < merchant_points
    ):
        raise RefundRefused(
            "the points earned on this purchase were already turned into vouchers",
            reason="points_already_used",
        )


async def refund(ctx: Ctx, purchase_id: int, req: RefundRequest, by: str) -> RefundOut:
    """Refund ``req.amount_fen`` of purchase ``purchase_id`` made at ``req.merchant_id``.

    ``by``: who refunds it (a key's label or ``staff:<channel>:<id>``). Raises ``NotFound`` (no
    such purchase at this merchant) and ``RefundRefused`` (``details["reason"]``, see the
    module docstring); a retry with the same idempotency key answers the first refund.
    """
    fingerprint = _fingerprint(purchase_id, req)
    scope = f"refund:m{req.merchant_id}"

    async def work(session: AsyncSession) -> RefundOut:
        now = ctx.now()
        claimed = await idempotency.claim(session, scope, req.idempotency_key, fingerprint, now)
        if claimed.replay is not None:
            return RefundOut.model_validate(claimed.replay)
        p = await session.scalar(
            select(Purchase)
            .where(Purchase.id == purchase_id, Purchase.merchant_id == req.merchant_id)
            .with_for_update()
        )
        if p is None:
            raise NotFound("no such purchase at this merchant", purchase_id=purchase_id)
        await _refused_if_undone(session, p.id)
        until = hold.refundable_until(ctx.rules, p.created_at)
        if now >= until:
            raise RefundRefused(
                "the purchase's hold is over: its points may have been released, so it can no "
                "longer be refunded here",
                reason="refund_after_hold",
                until=until.isoformat() + "Z",
            )
        before_fen, *_ = await _refunded(session, p.id)
        left = p.amount_fen - before_fen
        if req.amount_fen > left:
            raise RefundRefused(
                "more than is left of this purchase to refund",
                reason="over_refund",
                refundable_fen=left,
            )
        after_fen = before_fen + req.amount_fen
        back = [
            taken_back(total, p.amount_fen, before_fen, after_fen)
            for total in (p.concession_fen, p.member_points, p.merchant_points)
        ]
        concession, member_points, merchant_points = back
        await _check_points_there(session, p, member_points, merchant_points)
        if member_points:
            await session.execute(
                update(Member)
                .where(Member.id == p.member_id)
                .values(points=Member.points - member_points)
            )
            await mint_lots.take_back(session, p.member_id, p.id, member_points)
        shard = journal.pick_shard(ctx.rules.shards)
        figures = {
            "purchase_id": p.id,
            "merchant_id": p.merchant_id,
            "member_id": p.member_id,
            "amount_fen": req.amount_fen,
            "concession_fen": concession,
            "member_points": member_points,
            "merchant_points": merchant_points,
        }
        row = PurchaseRefund(**figures, reason=req.reason, refunded_by=by[:200], created_at=now)
        session.add(row)
        await session.flush()
        out = RefundOut(
            refund_id=row.id,
            **figures,
            refunded_fen=after_fen,
            refundable_fen=p.amount_fen - after_fen,
            at=now,
            by=by,
        )
        merchant = await merchants.load(session, p.merchant_id)
        await events.emit(
            session,
            events.PURCHASE_REFUNDED,
            now=now,
            member_id=p.member_id,
            merchant_id=p.merchant_id,
            payload={
                "purchase_id": p.id,
                "refund_id": row.id,
                "amount_fen": req.amount_fen,
                "points": -member_points,
                "merchant_name": merchant.name,
            },
        )
        await idempotency.complete(session, claimed, out.model_dump(mode="json"))
        # The merchant's slice of the shard is written under the shard's lock, as a purchase's.
        await journal.post(
            session,
            shard=shard,
            kind=KIND,
            ref=f"refund:{row.id}",
            postings=postings(row),
            now=now,
            also=(merchant_credit(p.merchant_id, shard, -merchant_points, 0),)
            if merchant_points
            else (),
        )
        return out

    return await ctx.db.run_write(work)

