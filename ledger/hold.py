"""Pending points (issue 11; DESIGN.md "Merchants and their money", Undo and refund).

Points a purchase mints — the member's and the merchant's — are *pending* for
``Rules.points_hold_days`` days after the purchase: they count in the balance, but the daily
release neither burns them nor converts them at the exit cap, so a refund inside the hold finds
every point it takes back still there and reverses exactly. After the hold a refund is refused
(``refund_after_hold``).

A member's pending points are their mint lots minted after the cutoff (``mint_lots.minted_at``;
lots keep exactly what is left of each purchase's points). A merchant's are the merchant points
of its purchases after the cutoff, less what refunds took back of them; points an undone
redemption took back are still counted pending until the hold ends, so a merchant's release
waits for them (never the other way round).

The release of a day uses one cutoff for all its batches: the moment it started less the hold.
Every batch runs at or after that moment, so a purchase a refund may still reverse (made less
than the hold before the refund, which comes after the batch) was minted after the cutoff: the
release left it alone.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.rules import Rules
from ledger.schema import Purchase, PurchaseRefund


def hold(rules: Rules) -> dt.timedelta:
    return dt.timedelta(days=rules.points_hold_days)


def release_cutoff(rules: Rules, started_at: dt.datetime) -> dt.datetime:
    """Points minted after this (naive UTC) are pending for a release that started at
    ``started_at``."""
    return started_at - hold(rules)


def refundable_until(rules: Rules, purchased_at: dt.datetime) -> dt.datetime:
    """Until when (naive UTC, exclusive) a purchase made at ``purchased_at`` may be refunded."""
    return purchased_at + hold(rules)


async def merchants_pending(
    session: AsyncSession, merchant_ids: list[int], cutoff: dt.datetime
) -> dict[int, int]:
    """Merchant points (points) of ``merchant_ids`` minted after ``cutoff`` and not refunded:
    two grouped reads over the purchases' (merchant_id, created_at) index."""
    minted = (
        await session.execute(
            select(Purchase.merchant_id, func.sum(Purchase.merchant_points))
            .where(
                Purchase.merchant_id.in_(merchant_ids),
                Purchase.created_at > cutoff,
                Purchase.merchant_points > 0,
            )
            .group_by(Purchase.merchant_id)
        )
    ).all()
    pending = {int(m): int(p or 0) for m, p in minted}
    if not pending:
        return {}
    refunded = (
        await session.execute(
            select(Purchase.merchant_id, func.sum(PurchaseRefund.merchant_points))
            .join(Purchase, Purchase.id == PurchaseRefund.purchase_id)
            .where(Purchase.merchant_id.in_(list(pending)), Purchase.created_at > cutoff)
            .group_by(Purchase.merchant_id)
        )
    ).all()
    for m, back in refunded:
        pending[int(m)] -= int(back or 0)
    return pending
