"""The share-value airdrop (共享购), a release policy chosen by ``Rules.release_policy``.

DESIGN.md "The seeds' other rules", issue 13: purchases earn share value — the member
``airdrop_member_share_bp`` (default 10×) and the merchant ``airdrop_merchant_share_bp``
(default 2×) of the concession — and each day ``airdrop_daily_fen`` of the pool is divided among
holders in proportion to their share value, as vouchers (members) or settlement (merchants).
Points are not burned.

Fixed when the day starts (stored on its ``releases`` row, so a resumed run divides the same
amount): the amount A = min(airdrop_daily_fen, pool), the last purchase whose share value counts
(later purchases wait for tomorrow), and the total share value S over every holder. Each
holder's share value is floor(concessions × share_bp / 10,000) and gets floor(A × share / S)
fen; S is the sum of exactly those floored shares, so the grants never add up to more than A,
and the remainders stay in the pool. Share value is derived from the purchases table (a refund
that lowers a purchase's concession lowers it too); it is a weight, not spent by a payout.

Batches walk holders by id with the same cursors, journal entries and ``voucher.granted``
events as the fraction release; a batch is one transaction, so a crash resumes exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import events, journal
from ledger.journal import FEN, Posting
from ledger.purchases import credit_merchant
from ledger.rules import BP, Rules
from ledger.schema import Event, Member, Purchase, Release, Shard, VoucherLot


@dataclass(frozen=True)
class Start:
    """What an airdrop day fixes when it starts."""

    amount_fen: int
    shares: int
    last_purchase_id: int


def share_of(concessions_fen: int, share_bp: int) -> int:
    """A holder's share value from the concessions of their purchases (floored)."""
    return concessions_fen * share_bp // BP


def payout(amount_fen: int, share: int, total_shares: int) -> int:
    """A holder's fen of the day's amount: floor(A × share / S); 0 when there are no shares."""
    return amount_fen * share // total_shares if total_shares > 0 else 0


async def _shares(session: AsyncSession, holder: Any, share_bp: int, last: int) -> int:
    per_holder = (
        select((func.sum(Purchase.concession_fen) * share_bp // BP).label("s"))
        .where(Purchase.id <= last)
        .group_by(holder)
        .subquery()
    )
    return int(await session.scalar(select(func.coalesce(func.sum(per_holder.c.s), 0))) or 0)


async def start(session: AsyncSession, rules: Rules, pool_fen: int) -> Start:
    """Fix the day's amount, last counted purchase and total share value (see the docstring)."""
    last = int(await session.scalar(select(func.coalesce(func.max(Purchase.id), 0))) or 0)
    shares = await _shares(
        session, Purchase.member_id, rules.airdrop_member_share_bp, last
    ) + await _shares(session, Purchase.merchant_id, rules.airdrop_merchant_share_bp, last)
    return Start(min(rules.airdrop_daily_fen, max(pool_fen, 0)), shares, last)


async def _holders(
    session: AsyncSession, holder: Any, after: int, last: int, size: int
) -> list[tuple[int, int]]:
    rows = (
        await session.execute(
            select(holder, func.sum(Purchase.concession_fen))
            .where(holder > after, Purchase.id <= last)
            .group_by(holder)
            .order_by(holder)
            .limit(size)
        )
    ).all()
    return [(int(h), int(c)) for h, c in rows]


_members = Member.metadata.tables[Member.__tablename__]
_CREDIT_MEMBER = (
    update(_members)
    .where(_members.c.id == bindparam("m_id"))
    .values(vouchers_fen=_members.c.vouchers_fen + bindparam("m_fen"))
)


async def member_batch(
    session: AsyncSession, release: Release, rules: Rules, now: dt.datetime
) -> bool:
    """Pay the next batch of members; False when none are left. Updates the release row."""
    rows = await _holders(
        session,
        Purchase.member_id,
        release.member_cursor,
        release.share_purchase_id,
        rules.release_batch_size,
    )
    if not rows:
        return False
    expires = now + dt.timedelta(days=rules.voucher_ttl_days)
    grants = [
        (member_id, fen)
        for member_id, concessions in rows
        if (
            fen := payout(
                release.airdrop_fen,
                share_of(concessions, rules.airdrop_member_share_bp),
                release.airdrop_shares,
            )
        )
        > 0
    ]
    if grants:
        await session.execute(_CREDIT_MEMBER, [{"m_id": m, "m_fen": f} for m, f in grants])
        await session.execute(
            insert(VoucherLot),
            [
                {
                    "member_id": m,
                    "release_date": release.release_date,
                    "amount_fen": f,
                    "remaining_fen": f,
                    "granted_at": now,
                    "expires_at": expires,
                    "expiring_notified": False,
                }
                for m, f in grants
            ],
        )
        await session.execute(
            insert(Event),
            [
                {
                    "type": events.VOUCHER_GRANTED,
                    "member_id": m,
                    "merchant_id": None,
                    "payload": {
                        "vouchers_fen": f,
                        "points_burned": 0,
                        "expires_at": expires.isoformat(),
                        "release_date": release.release_date.isoformat(),
                        "policy": "airdrop",
                    },
                    "created_at": now,
                }
                for m, f in grants
            ],
        )
        total = sum(f for _m, f in grants)
        postings: list[Posting] = [(journal.member_vouchers(m), FEN, f) for m, f in grants]
        postings.append((journal.POOL, FEN, -total))
        await journal.post(
            session,
            shard=journal.pick_shard(rules.shards),
            kind="release",
            ref=f"airdrop:{release.release_date.isoformat()}:members:{rows[0][0]}-{rows[-1][0]}",
            postings=postings,
            now=now,
        )
        release.members_granted += len(grants)
        release.vouchers_fen += total
    release.member_cursor = rows[-1][0]
    return True


async def merchant_batch(
    session: AsyncSession, release: Release, rules: Rules, now: dt.datetime
) -> bool:
    """Pay the next batch of merchants into settlement; False when none are left.

    Takes every shard's lock in order first, as the fraction release's merchant batch does.
    """
    rows = await _holders(
        session,
        Purchase.merchant_id,
        release.merchant_cursor,
        release.share_purchase_id,
        rules.release_batch_size,
    )
    if not rows:
        return False
    await session.execute(select(Shard.k).order_by(Shard.k).with_for_update())
    target = journal.pick_shard(rules.shards)
    postings: list[Posting] = []
    total = granted = 0
    for merchant_id, concessions in rows:
        fen = payout(
            release.airdrop_fen,
            share_of(concessions, rules.airdrop_merchant_share_bp),
            release.airdrop_shares,
        )
        if fen <= 0:
            continue
        await credit_merchant(session, merchant_id, target, 0, fen)
        postings.append((journal.merchant_settlement(merchant_id), FEN, fen))
        total += fen
        granted += 1
    if postings:
        postings.append((journal.POOL, FEN, -total))
        await journal.post(
            session,
            shard=target,
            kind="release",
            ref=f"airdrop:{release.release_date.isoformat()}:merchants:{rows[0][0]}-{rows[-1][0]}",
            postings=postings,
            now=now,
        )
        release.merchants_granted += granted
        release.vouchers_fen += total
    release.merchant_cursor = rows[-1][0]
    return True
