"""Redemption codes: issue, preview and redeem at the till.

A code is redeemed by one conditional state change on its row (live → used) inside the same
transaction as the money moves, so of any number of concurrent attempts exactly one commits;
retries with the winner's idempotency key get the winner's receipt back.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import (
    codes,
    events,
    idempotency,
    insider,
    journal,
    member_code,
    merchants,
    mint_lots,
    previewed,
    purchase_cap,
    throttle,
)
from ledger.context import Ctx
from ledger.errors import (
    CodeNotFound,
    CodeUsed,
    MemberNotFound,
    Throttled,
)
from ledger.journal import FEN, Posting
from ledger.models import CodeOut, PreviewOut, PreviewRequest, RedeemRequest, RedemptionOut
from ledger.money import split_purchase, vouchers_applicable
from ledger.purchases import book_purchase, credit_merchant, current_price
from ledger.schema import Member, Redemption, RedemptionCode, RedemptionLot, VoucherLot

log = logging.getLogger(__name__)


def mask_name(name: str | None, member_id: int) -> str:
    """Enough for the cashier to say "thank you, Ms Zhang", nothing to look anyone up by."""
    if name:
        first = name.strip()[:1]
        return f"{first}**" if first else f"**{member_id % 10000:04d}"
    return f"**{member_id % 10000:04d}"


async def available_vouchers(
    session: AsyncSession, member_id: int, now: dt.datetime, lock: bool = False
) -> list[VoucherLot]:
    query = (
        select(VoucherLot)
        .where(
            VoucherLot.member_id == member_id,
            VoucherLot.remaining_fen > 0,
            VoucherLot.expires_at > now,
        )
        .order_by(VoucherLot.expires_at, VoucherLot.id)
    )
    if lock:
        query = query.with_for_update()
    return list((await session.scalars(query)).all())


async def issue(ctx: Ctx, member_id: int) -> CodeOut:
    """A fresh code for the member; any code still live for them stops working."""
    for _ in range(3):
        secret = codes.new_redemption_secret()
        now = ctx.now()
        expires = now + dt.timedelta(seconds=ctx.rules.code_ttl_seconds)
        async def work(
            session: AsyncSession,
            secret: int = secret,
            now: dt.datetime = now,
            expires: dt.datetime = expires,
        ) -> list[VoucherLot]:
            # Concurrent issues for one member take turns on the member's row, each replacing
            # the last code instead of colliding on the one-live-code index until the retries
            # run out. (A redeem locks code then member; a deadlock with one is retried.)
            member = await session.get(Member, member_id, with_for_update=True)
            if member is None:
                raise MemberNotFound("no such member", member_id=member_id)
            await session.execute(
                update(RedemptionCode)
                .where(RedemptionCode.member_id == member_id, RedemptionCode.state == "live")
                .values(state="revoked")
            )
            await session.execute(
                insert(RedemptionCode).values(
                    member_id=member_id,
                    code_hash=codes.redemption_hash(secret),
                    state="live",
                    created_at=now,
                    expires_at=expires,
                )
            )
            return await available_vouchers(session, member_id, now)

        try:
            lots = await ctx.db.run_write(work)
        except IntegrityError:
            continue  # a concurrent issue for the same member won; take a turn after it
        return CodeOut(
            member_id=member_id,
            link_code=codes.link_form(secret),
            numeric_code=codes.numeric_form(secret),
            expires_at=expires,
            vouchers_fen=sum(lot.remaining_fen for lot in lots),
        )
    raise AssertionError("could not issue a code")  # pragma: no cover


async def _load_code(
    session: AsyncSession, ctx: Ctx, raw: str, now: dt.datetime, lock: bool
) -> RedemptionCode:
    secret = codes.parse_redemption_code(raw)
    if secret is None:
        raise CodeNotFound("that is not a redemption code")
    query = select(RedemptionCode).where(RedemptionCode.code_hash == codes.redemption_hash(secret))
    if lock:
        query = query.with_for_update()
    code = await session.scalar(query)
    if code is None:
        raise CodeNotFound("no such redemption code")
    member_code.check_live(code.state, code.expires_at, now)
    return code


async def preview(ctx: Ctx, req: PreviewRequest, actor: str) -> PreviewOut:
    await throttle.check(ctx, actor)
    now = ctx.now()
    # The attempt is counted before the code is checked (throttle.guess).
    async with throttle.guess(ctx, actor, req.code), ctx.db.read() as session:
        code = await _load_code(session, ctx, req.code, now, lock=False)
        merchant = await merchants.load(session, req.merchant_id)
        member = await session.get_one(Member, code.member_id)
        if ctx.rules.insider_limits:
            await insider.check(session, member.id, merchant.id)
        lots = await available_vouchers(session, member.id, now)
        price = await current_price(session)
    applied = vouchers_applicable(
        req.bill_fen, merchant.voucher_cap_bp, sum(lot.remaining_fen for lot in lots)
    )
    split = split_purchase(req.bill_fen - applied, merchant.concession_bp, False, price, ctx.rules)
    return PreviewOut(
        merchant_id=merchant.id,
        bill_fen=req.bill_fen,
        vouchers_applied_fen=applied,
        pay_fen=req.bill_fen - applied,
        points_to_earn=split.member_points,
        member_masked=mask_name(member.display_name, member.id),
        code_expires_at=code.expires_at,
    )


def _spend_lots(lots: list[VoucherLot], amount: int) -> list[tuple[int, int]]:
    """(lot id, new remaining) after spending ``amount``, soonest-expiring first."""
    changes: list[tuple[int, int]] = []
    for lot in lots:
        if amount <= 0:
            break
        take = min(lot.remaining_fen, amount)
        amount -= take
        changes.append((lot.id, lot.remaining_fen - take))
    return changes


def _redeem_fingerprint(req: RedeemRequest) -> str:
    """The same code typed as 20 digits or scanned as a link is the same request."""
    return idempotency.request_hash(
        {
            "code": member_code.fingerprint(req.code),
            "merchant_id": req.merchant_id,
            "bill_fen": req.bill_fen,
            "vouchers_applied_fen": req.vouchers_applied_fen,
        }
    )


async def redeem(
    ctx: Ctx, req: RedeemRequest, actor: str, staff: str | None, store_id: int | None = None
) -> RedemptionOut:
    scope = f"redeem:m{req.merchant_id}"
    fingerprint = _redeem_fingerprint(req)
    try:
        await throttle.check(ctx, actor)
    except Throttled:
        # A till retrying a redemption that already went through is owed its receipt, even
        # while the same key is locked out for guessing.
        async with ctx.db.read() as session:
            stored = await idempotency.answered(session, scope, req.idempotency_key, fingerprint)
        if stored is None:
            raise
        return RedemptionOut.model_validate(stored)

    async def work(session: AsyncSession) -> RedemptionOut:
        now = ctx.now()
        claimed = await idempotency.claim(session, scope, req.idempotency_key, fingerprint, now)
        if claimed.replay is not None:
            return RedemptionOut.model_validate(claimed.replay)
        code = await _load_code(session, ctx, req.code, now, lock=True)
        merchant = await merchants.load(session, req.merchant_id)
        member = await session.get_one(Member, code.member_id, with_for_update=True)
        if ctx.rules.insider_limits:
            await insider.check(session, member.id, merchant.id)
        lots = await available_vouchers(session, member.id, now, lock=True)
        applied = vouchers_applicable(
            req.bill_fen, merchant.voucher_cap_bp, sum(lot.remaining_fen for lot in lots)
        )
        if applied != req.vouchers_applied_fen:
            fresh = split_purchase(
                req.bill_fen - applied,
                merchant.concession_bp,
                False,
                await current_price(session),
                ctx.rules,
            )
            previewed.check_unchanged(req, applied, fresh.member_points)
        await purchase_cap.check(
            session,
            ctx.rules,
            ctx.day_bounds(ctx.today()),
            member.id,
            merchant.id,
            req.bill_fen - applied,
        )
        before = {lot.id: lot.remaining_fen for lot in lots}
        spent = _spend_lots(lots, applied)
        for lot_id, remaining in spent:
            await session.execute(
                update(VoucherLot).where(VoucherLot.id == lot_id).values(remaining_fen=remaining)
            )
        if applied:
            await session.execute(
                update(Member)
                .where(Member.id == member.id)
                .values(vouchers_fen=Member.vouchers_fen - applied)
            )
        marked = await session.execute(
            update(RedemptionCode)
            .where(RedemptionCode.id == code.id, RedemptionCode.state == "live")
            .values(state="used", used_at=now)
        )
        if getattr(marked, "rowcount", 0) != 1:
            raise CodeUsed("this code was already redeemed")
        pay = req.bill_fen - applied
        price = await current_price(session)
        booked = await book_purchase(
            session,
            ctx,
            merchant_id=merchant.id,
            concession_bp=merchant.concession_bp,
            member_id=member.id,
            amount_fen=pay,
            green_tags=[],
            price=price,
            now=now,
            store_id=store_id,
        )
        await mint_lots.record(
            session, member.id, booked.purchase_id, booked.split, price, now
        )
        redemption_id = await session.scalar(
            insert(Redemption)
            .values(
                code_id=code.id,
                merchant_id=merchant.id,
                member_id=member.id,
                bill_fen=req.bill_fen,
                vouchers_applied_fen=applied,
                paid_fen=pay,
                points_earned=booked.split.member_points,
                purchase_id=booked.purchase_id,
                staff=staff,
                created_at=now,
                store_id=store_id,
            )
            .returning(Redemption.id)
        )
        assert redemption_id is not None
        if spent:  # what an undo puts back, lot by lot (ledger/undo.py)
            await session.execute(
                insert(RedemptionLot),
                [
                    {"redemption_id": redemption_id, "lot_id": lot_id, "fen": before[lot_id] - left}
                    for lot_id, left in spent
                ],
            )
        postings: list[Posting] = (
            [
                (journal.member_vouchers(member.id), FEN, -applied),
                (journal.merchant_settlement(merchant.id), FEN, applied),
            ]
            if applied
            else []
        )
        shard = journal.pick_shard(ctx.rules.shards)
        await journal.post(
            session,
            shard=shard,
            kind="redemption",
            ref=f"redemption:{redemption_id}",
            postings=postings + booked.postings,
            now=now,
        )
        await credit_merchant(session, merchant.id, shard, booked.split.merchant_points, applied)
        await events.emit(
            session,
            events.VOUCHER_REDEEMED,
            now=now,
            member_id=member.id,
            merchant_id=merchant.id,
            payload={
                "redemption_id": redemption_id,
                "vouchers_fen": applied,
                "bill_fen": req.bill_fen,
                "pay_fen": pay,
                "points": booked.split.member_points,
                "merchant_name": merchant.name,
            },
        )
        out = RedemptionOut(
            redemption_id=redemption_id,
            merchant_id=merchant.id,
            merchant_name=merchant.name,
            bill_fen=req.bill_fen,
            vouchers_applied_fen=applied,
            pay_fen=pay,
            points_earned=booked.split.member_points,
            member_masked=mask_name(member.display_name, member.id),
            at=now,
        )
        await idempotency.complete(session, claimed, out.model_dump(mode="json"))
        return out

    try:
        async with throttle.guess(ctx, actor, req.code):  # counted before the code is checked
            return await ctx.db.run_write(work)
    finally:
        log.info("redeem attempt by %s code=%s", actor, codes.mask(req.code))
