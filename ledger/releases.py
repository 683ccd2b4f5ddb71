"""The daily voucher release, voucher expiry, and the "expiring soon" notices.

A release walks every holder in batches of ``Rules.release_batch_size`` by primary key, each
batch a few set-based statements (``release_grants``) and one journal entry in one transaction.
The day's price is fixed when the release starts, the cursor is saved with each batch, and a lot
is unique per (member, day), so a crashed run resumes where it stopped and a second run for the
same day grants nothing twice. Which dates may start a release: ``release_dates``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import (
    exit_cap,
    hold,
    journal,
    release_airdrop,
    release_dates,
    release_expiry,
    release_grants,
    statements,
    unusual,
)
from ledger.context import Ctx
from ledger.db import insert_on_conflict
from ledger.journal import FEN, POINTS, Posting
from ledger.models import ReleaseOut
from ledger.money import Price, release_grant
from ledger.purchases import current_price
from ledger.schema import MerchantBalance, MerchantRelease, Release, Shard


async def _start(ctx: Ctx, day: dt.date) -> Release:
    async with ctx.db.write() as session:
        release = await session.get(Release, day, with_for_update=True)
        if release is None:
            await release_dates.check_new(session, day, ctx.today())
            price = await current_price(session)
            airdrop = (
                await release_airdrop.start(session, ctx.rules, price.pool_fen)
                if ctx.rules.release_policy == "airdrop"
                else release_airdrop.Start(0, 0, 0)
            )
            # Two runs of one day at once (cron and an admin): the second waits for the first
            # one's row and resumes it, instead of failing on the primary key.
            started = insert_on_conflict(session, Release).values(
                release_date=day,
                state="running",
                fraction_bp=ctx.rules.release_fraction_bp,
                price_pool_fen=price.pool_fen,
                price_points=price.points,
                member_cursor=0,
                merchant_cursor=0,
                members_granted=0,
                merchants_granted=0,
                points_burned=0,
                vouchers_fen=0,
                started_at=ctx.now(),
                policy=ctx.rules.release_policy,
                airdrop_fen=airdrop.amount_fen,
                airdrop_shares=airdrop.shares,
                share_purchase_id=airdrop.last_purchase_id,
                exit_cap_multiple_bp=ctx.rules.exit_cap_multiple_bp if ctx.rules.exit_cap else 0,
                exit_cap_share_bp=ctx.rules.exit_cap_share_bp if ctx.rules.exit_cap else 0,
                capped_points=0,
                capped_fen=0,
            )
            await session.execute(started.on_conflict_do_nothing())
            release = await session.get_one(Release, day, with_for_update=True)
    return release


async def _member_batch(ctx: Ctx, day: dt.date) -> bool:
    """Grant one batch of members (see ``release_grants``); False when none are left."""
    async with ctx.db.write() as session:
        release = await session.get_one(Release, day, with_for_update=True)
        now = ctx.now()
        if release.policy == "airdrop":
            return await release_airdrop.member_batch(session, release, ctx.rules, now)
        expires = now + dt.timedelta(days=ctx.rules.voucher_ttl_days)
        batch = await release_grants.grant_batch(
            session,
            day=day,
            lo=release.member_cursor,
            size=ctx.rules.release_batch_size,
            fraction_bp=release.fraction_bp,
            price=Price(release.price_pool_fen, release.price_points),
            now=now,
            expires=expires,
            cutoff=hold.release_cutoff(ctx.rules, release.started_at),
        )
        if batch is None:
            return False
        if batch.grants:
            postings: list[Posting] = []
            for g in batch.grants:
                postings += [
                    (journal.member_points(g.member_id), POINTS, -g.points_burned),
                    (journal.member_vouchers(g.member_id), FEN, g.vouchers_fen),
                ]
            burned_total = sum(g.points_burned for g in batch.grants)
            fen_total = sum(g.vouchers_fen for g in batch.grants)
            postings += [(journal.ISSUANCE, POINTS, burned_total), (journal.POOL, FEN, -fen_total)]
            await journal.post(
                session,
                shard=journal.pick_shard(ctx.rules.shards),
                kind="release",
                ref=f"release:{day.isoformat()}:members:{release.member_cursor + 1}-{batch.hi}",
                postings=postings,
                now=now,
            )
            release.members_granted += len(batch.grants)
            release.points_burned += burned_total
            release.vouchers_fen += fen_total
        # Issue 13: lots follow the burn (oldest first), then those at their cap exit.
        await exit_cap.convert(
            session,
            release,
            lo=release.member_cursor,
            hi=batch.hi,
            now=now,
            expires=expires,
            shard=journal.pick_shard(ctx.rules.shards),
            cutoff=hold.release_cutoff(ctx.rules, release.started_at),
        )
        release.member_cursor = batch.hi
    return True


_balances = MerchantBalance.metadata.tables[MerchantBalance.__tablename__]


def _keep_merchant(session: AsyncSession) -> Any:
    """Add ``points`` and ``fen`` (settlement) to merchant ``m``'s slice of shard ``k``."""
    stmt = insert_on_conflict(session, _balances).values(
        merchant_id=bindparam("m"),
        shard=bindparam("k"),
        points=bindparam("points"),
        settlement_fen=bindparam("fen"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[_balances.c.merchant_id, _balances.c.shard],
        set_={
            "points": _balances.c.points + stmt.excluded.points,
            "settlement_fen": _balances.c.settlement_fen + stmt.excluded.settlement_fen,
        },
    )


async def _merchant_batch(ctx: Ctx, day: dt.date) -> bool:
    """Convert one batch of merchants' points into settlement; False when none are left.

    A merchant's points are spread over its per-shard rows, and each row is only written under
    its shard's lock; so this takes every shard's lock, in order (the order purchases can never
    contradict, as they hold one shard at most), and releases each merchant from its total.
    Purchases pause for the few milliseconds a batch takes, once a day.
    """
    async with ctx.db.write() as session:
        release = await session.get_one(Release, day, with_for_update=True)
        if release.policy == "airdrop":
            return await release_airdrop.merchant_batch(session, release, ctx.rules, ctx.now())
        await session.execute(select(Shard.k).order_by(Shard.k).with_for_update())
        price = Price(release.price_pool_fen, release.price_points)
        ids = (
            await session.scalars(
                select(MerchantBalance.merchant_id)
                .where(
                    MerchantBalance.merchant_id > release.merchant_cursor,
                    MerchantBalance.points > 0,
                )
                .group_by(MerchantBalance.merchant_id)
                .order_by(MerchantBalance.merchant_id)
                .limit(ctx.rules.release_batch_size)
            )
        ).all()
        if not ids:
            return False
        rows = (
            await session.execute(
                select(MerchantBalance.merchant_id, MerchantBalance.shard, MerchantBalance.points)
                # Every slice, negative ones too: a refund or an undo takes points back on the
                # shard it writes, so one slice can be below zero while the sum is what is held.
                .where(MerchantBalance.merchant_id.in_(ids), MerchantBalance.points != 0)
                .order_by(MerchantBalance.merchant_id, MerchantBalance.points.desc())
            )
        ).all()
        holdings: dict[int, int] = defaultdict(int)
        for merchant_id, _shard, points in rows:
            holdings[merchant_id] += points
        # Pending merchant points (ledger.hold) stay out of the release until their hold ends.
        pending = await hold.merchants_pending(
            session, list(ids), hold.release_cutoff(ctx.rules, release.started_at)
        )
        target = journal.pick_shard(ctx.rules.shards)
        now = ctx.now()
        postings: list[Posting] = []
        burned_total = fen_total = 0
        kept: list[dict[str, int]] = []
        released: list[dict[str, Any]] = []
        for merchant_id, points in holdings.items():
            grant = release_grant(
                max(points - pending.get(merchant_id, 0), 0), release.fraction_bp, price
            )
            if grant is None:
                continue
            released.append(
                statements.released(
                    merchant_id, day, now, grant.points_burned, grant.vouchers_fen
                )
            )
            kept.append(
                {
                    "m": merchant_id,
                    "k": target,
                    "points": points - grant.points_burned,
                    "fen": grant.vouchers_fen,
                }
            )
            postings += [
                (journal.merchant_points(merchant_id), POINTS, -grant.points_burned),
                (journal.merchant_settlement(merchant_id), FEN, grant.vouchers_fen),
            ]
            burned_total += grant.points_burned
            fen_total += grant.vouchers_fen
        granted = len(kept)
        if kept:
            # Two statements for the whole batch: each granted merchant's slices are emptied
            # and what it keeps goes, with its settlement, to the target shard's slice (a
            # merchant's balance is the sum of its slices; every shard is locked meanwhile).
            await session.execute(
                update(MerchantBalance)
                .where(MerchantBalance.merchant_id.in_([k["m"] for k in kept]))
                .where(MerchantBalance.points != 0)
                .values(points=0)
                .execution_options(synchronize_session=False)
            )
            await session.execute(_keep_merchant(session), kept)
            await session.execute(insert(MerchantRelease), released)
        if postings:
            postings += [(journal.ISSUANCE, POINTS, burned_total), (journal.POOL, FEN, -fen_total)]
            await journal.post(
                session,
                shard=target,
                kind="release",
                ref=f"release:{day.isoformat()}:merchants:{ids[0]}-{ids[-1]}",
                postings=postings,
                now=now,
            )
        release.merchant_cursor = ids[-1]
        release.merchants_granted += granted
        release.points_burned += burned_total
        release.vouchers_fen += fen_total
    return True


async def expire_lots(ctx: Ctx, batch: int = 5000) -> int:
    """Return expired vouchers' value to the pool; returns how many lots expired.

    Each batch (``release_expiry.expire_batch``) is one transaction with one journal entry.
    """
    total = 0
    while True:
        now = ctx.now()
        async with ctx.db.write() as session:
            expired = await release_expiry.expire_batch(session, now=now, size=batch)
            if expired is None:
                return total
            postings: list[Posting] = [
                (journal.member_vouchers(m), FEN, -fen) for m, fen in expired.per_member
            ]
            postings.append((journal.POOL, FEN, sum(fen for _m, fen in expired.per_member)))
            await journal.post(
                session,
                shard=journal.pick_shard(ctx.rules.shards),
                kind="expiry",
                ref=f"expiry:{now.isoformat()}:{expired.per_member[0][0]}",
                postings=postings,
                now=now,
            )
            total += expired.lots


async def notify_expiring(ctx: Ctx, batch: int = 5000) -> int:
    """One ``voucher.expiring`` event per member whose vouchers expire within the notice window
    (``Rules.expiring_notice_days``), each lot announced once; returns how many events."""
    total = 0
    now = ctx.now()
    horizon = now + dt.timedelta(days=ctx.rules.expiring_notice_days)
    after: release_expiry.Walk = (now, 2**62)
    while True:
        async with ctx.db.write() as session:
            done = await release_expiry.notify_batch(
                session, now=now, horizon=horizon, after=after, size=batch
            )
        if done is None:
            return total
        emitted, after = done
        total += emitted


async def run(ctx: Ctx, day: dt.date | None = None) -> ReleaseOut:
    day = day or ctx.today()
    release = await _start(ctx, day)
    if release.state != "done":
        while await _member_batch(ctx, day):
            pass
        while await _merchant_batch(ctx, day):
            pass
    expired = await expire_lots(ctx)
    expiring = await notify_expiring(ctx)
    async with ctx.db.write() as session:
        release = await session.get_one(Release, day, with_for_update=True)
        if release.state != "done":
            release.state = "done"
            release.finished_at = ctx.now()
            # The admins' daily alert (issue 11): the last whole local day's unusual volume.
            await unusual.announce(session, ctx, day - dt.timedelta(days=1), ctx.now())
    return ReleaseOut(
        date=day,
        state=release.state,
        members_granted=release.members_granted,
        merchants_granted=release.merchants_granted,
        points_burned=release.points_burned,
        vouchers_fen=release.vouchers_fen,
        expired_lots=expired,
        expiring_notices=expiring,
        capped_points=release.capped_points,
        capped_fen=release.capped_fen,
    )
