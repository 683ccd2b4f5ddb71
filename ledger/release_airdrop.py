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
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import events, journal, statements
from ledger.journal import FEN, Posting
from ledger.purchases import credit_merchant
from ledger.release_grants import stamp
from ledger.rules import BP, Rules
from ledger.schema import MerchantRelease, Purchase, Release, Shard


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


_BOUNDS = text(
    "SELECT max(member_id) FROM (SELECT DISTINCT member_id FROM purchases"
    " WHERE member_id > :lo AND id <= :last ORDER BY member_id LIMIT :size) AS b"
)
# Each member's share value over the batch's id range, from the purchases counted today.
_SHARES = (
    "SELECT member_id AS id, sum(concession_fen) * :share_bp / :bp AS share FROM purchases"
    " WHERE member_id > :lo AND member_id <= :hi AND id <= :last GROUP BY member_id"
)
_PG_BATCH = text(
    f"""
WITH s AS ({_SHARES}),
g AS (SELECT id, div(share::numeric * :amount, :shares)::bigint AS fen FROM s),
granted AS (
    UPDATE members AS m SET vouchers_fen = m.vouchers_fen + g.fen
    FROM g WHERE m.id = g.id AND g.fen > 0
    RETURNING m.id, g.fen
), lots AS (
    INSERT INTO voucher_lots
        (member_id, release_date, amount_fen, remaining_fen, granted_at, expires_at,
         expiring_notified)
    SELECT id, :day, fen, fen, :now, :expires, false FROM granted
), notices AS (
    INSERT INTO events (type, member_id, merchant_id, payload, created_at)
    SELECT :event_type, id, NULL,
           json_build_object('vouchers_fen', fen, 'points_burned', 0,
                             'expires_at', CAST(:expires_iso AS text),
                             'release_date', CAST(:day_iso AS text), 'policy', 'airdrop'),
           :now
    FROM granted ORDER BY id
)
SELECT id, fen FROM granted ORDER BY id
"""
)
# SQLite: the exact grants are computed in Python (its integers are unbounded) and handed
# back as one JSON parameter that the writes read as a table.
_SQLITE_SHARES = text(f"{_SHARES} ORDER BY member_id")
_SQLITE_GRANTS = (
    "SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS fen"
    " FROM json_each(:grants)"
)
_SQLITE_LOTS = text(
    "INSERT INTO voucher_lots (member_id, release_date, amount_fen, remaining_fen, granted_at,"
    f" expires_at, expiring_notified) SELECT id, :day, fen, fen, :now, :expires, 0"
    f" FROM ({_SQLITE_GRANTS})"
)
_SQLITE_EVENTS = text(
    "INSERT INTO events (type, member_id, merchant_id, payload, created_at)"
    " SELECT :event_type, id, NULL, json_object('vouchers_fen', fen, 'points_burned', 0,"
    " 'expires_at', :expires_iso, 'release_date', :day_iso, 'policy', 'airdrop'), :now"
    f" FROM ({_SQLITE_GRANTS})"
)
_SQLITE_MEMBERS = text(
    "UPDATE members SET vouchers_fen = vouchers_fen + g.fen"
    f" FROM ({_SQLITE_GRANTS}) AS g WHERE members.id = g.id"
)


async def member_batch(
    session: AsyncSession, release: Release, rules: Rules, now: dt.datetime
) -> bool:
    """Pay the next batch of members; False when none are left. Updates the release row.

    Set-based like ``release_grants``: on PostgreSQL one statement in numeric arithmetic; on
    SQLite the grants computed in Python from one aggregate, then written by three statements.
    """
    last, lo = release.share_purchase_id, release.member_cursor
    size = rules.release_batch_size
    hi = await session.scalar(_BOUNDS, {"lo": lo, "last": last, "size": size})
    if hi is None:
        return False
    day = release.release_date
    expires = now + dt.timedelta(days=rules.voucher_ttl_days)
    params: dict[str, object] = {
        "lo": lo,
        "hi": int(hi),
        "last": last,
        "share_bp": rules.airdrop_member_share_bp,
        "bp": BP,
        "amount": release.airdrop_fen,
        "shares": max(release.airdrop_shares, 1),
        "event_type": events.VOUCHER_GRANTED,
        "expires_iso": expires.isoformat(),
        "day_iso": day.isoformat(),
    }
    if session.get_bind().dialect.name == "postgresql":
        params |= {"day": day, "now": now, "expires": expires}
        grants = [(int(m), int(f)) for m, f in (await session.execute(_PG_BATCH, params))]
    else:
        shares = (await session.execute(_SQLITE_SHARES, params)).all()
        grants = [
            (int(m), fen)
            for m, share in shares
            if (fen := payout(release.airdrop_fen, int(share), release.airdrop_shares)) > 0
        ]
        if grants:
            params |= {
                "day": day.isoformat(),
                "now": stamp(now),
                "expires": stamp(expires),
                "grants": json.dumps(grants),
            }
            await session.execute(_SQLITE_LOTS, params)
            await session.execute(_SQLITE_EVENTS, params)
            await session.execute(_SQLITE_MEMBERS, params)
    if grants:
        total = sum(f for _m, f in grants)
        postings: list[Posting] = [(journal.member_vouchers(m), FEN, f) for m, f in grants]
        postings.append((journal.POOL, FEN, -total))
        await journal.post(
            session,
            shard=journal.pick_shard(rules.shards),
            kind="release",
            ref=f"airdrop:{day.isoformat()}:members:{lo + 1}-{hi}",
            postings=postings,
            now=now,
        )
        release.members_granted += len(grants)
        release.vouchers_fen += total
    release.member_cursor = int(hi)
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
    released: list[dict[str, Any]] = []
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
        released.append(statements.released(merchant_id, release.release_date, now, 0, fen))
        total += fen
        granted += 1
    if postings:
        await session.execute(insert(MerchantRelease), released)
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
