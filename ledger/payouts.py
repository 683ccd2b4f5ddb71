"""Payouts (结算; issue 11, DESIGN.md "Merchants and their money", Settlement): an admin records
that what a merchant was due through the end of a local period was paid, either way.

The amount is the ledger's, never typed: everything dated from the previous payout's end up to
this period's end (``statements.due_between``). A payout is one row and, when it moves money,
one journal entry ``payout:<id>`` posting ``merchant:<id>:payouts`` against the outside world's
``payouts`` account (``verify`` holds the row sums to it). Payouts follow the calendar: a
period already paid answers with its payout (so the CLI can simply be run again), a period
before a paid one is refused, and so is one that has not ended (more could still be booked in
it). The merchant's row is locked first, so two admins paying at once record one payout.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from ledger import idempotency, journal, statements
from ledger.context import Ctx
from ledger.errors import MerchantNotFound, PayoutRefused
from ledger.journal import FEN
from ledger.models import PayoutOut, PayoutRequest
from ledger.schema import Merchant, Payout


async def pay(ctx: Ctx, merchant_id: int, req: PayoutRequest, by: str) -> PayoutOut:
    """Record the payout of ``merchant_id``'s settlement through the end of ``req.period``.

    A retry with the same idempotency key gets the first answer; the same period paid again
    (any key) answers with its payout. Raises ``MerchantNotFound``, ``InvalidRequest`` (the
    period), ``PayoutRefused`` (``period_not_over``, ``paid_through_later``) and
    ``IdempotencyConflict`` (the key used for another payout).
    """
    _first, last = statements.parse_period(req.period)
    through = ctx.day_bounds(last)[1]
    fingerprint = idempotency.request_hash(
        {"merchant_id": merchant_id, "period": req.period, "reference": req.reference}
    )

    async def work(session: AsyncSession) -> PayoutOut:
        now = ctx.now()
        claimed = await idempotency.claim(
            session, f"payout:m{merchant_id}", req.idempotency_key, fingerprint, now
        )
        if claimed.replay is not None:
            return PayoutOut.model_validate(claimed.replay)
        merchant = await session.get(Merchant, merchant_id, with_for_update=True)
        if merchant is None:
            raise MerchantNotFound("no such merchant", merchant_id=merchant_id)
        paid = await statements.payouts_of(session, merchant_id)
        same = next((p for p in paid if p.through == through), None)
        if same is not None:
            out = statements.payout_out(same)
        else:
            if through > now:
                raise PayoutRefused(
                    "the period has not ended yet; pay it after its last local day",
                    reason="period_not_over",
                    period=req.period,
                )
            later = [p for p in paid if p.through > through]
            if later:
                raise PayoutRefused(
                    "a later period is already paid, and it settled this one too",
                    reason="paid_through_later",
                    paid_period=later[-1].period,
                )
            covers_from = paid[-1].through if paid else None
            due = await statements.due_between(
                session, merchant_id, covers_from or statements.EPOCH, through
            )
            out = await _record(
                ctx, session, merchant_id, req, by, covers_from, through, due, now
            )
        await idempotency.complete(session, claimed, out.model_dump(mode="json"))
        return out

    return await ctx.db.run_write(work)


async def _record(
    ctx: Ctx,
    session: AsyncSession,
    merchant_id: int,
    req: PayoutRequest,
    by: str,
    covers_from: dt.datetime | None,
    through: dt.datetime,
    due: int,
    now: dt.datetime,
) -> PayoutOut:
    row = Payout(
        merchant_id=merchant_id,
        period=req.period,
        covers_from=covers_from,
        through=through,
        amount_fen=due,
        created_at=now,
        created_by=by[:200],
        reference=req.reference,
    )
    session.add(row)
    await session.flush()
    if due:
        await journal.post(
            session,
            shard=journal.pick_shard(ctx.rules.shards),
            kind="payout",
            ref=f"payout:{row.id}",
            postings=[
                (journal.merchant_payouts(merchant_id), FEN, due),
                (journal.PAYOUTS, FEN, -due),
            ],
            now=now,
        )
    return statements.payout_out(row)
