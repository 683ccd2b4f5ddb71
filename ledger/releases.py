"""The daily voucher release, voucher expiry, and the "expiring soon" notices.

A release walks every holder in batches by primary key (never loading 12 million rows at once),
each batch one transaction with one journal entry. The day's price is fixed when the release
starts, the cursor is saved with each batch, and a lot is unique per (member, day), so a crashed
run resumes where it stopped and a second run for the same day grants nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import select, update

from ledger import events, journal, release_grants
from ledger.context import Ctx
from ledger.db import insert_on_conflict
from ledger.journal import FEN, POINTS, Posting
from ledger.models import ReleaseOut
from ledger.money import Price, release_grant
from ledger.purchases import credit_merchant, current_price
from ledger.schema import Member, MerchantBalance, Release, Shard, VoucherLot


async def _start(ctx: Ctx, day: dt.date) -> Release:
    async with ctx.db.write() as session:
        release = await session.get(Release, day, with_for_update=True)
        if release is None:
            price = await current_price(session)
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
            )
            await session.execute(started.on_conflict_do_nothing())
            release = await session.get_one(Release, day, with_for_update=True)
    return release


async def _member_batch(ctx: Ctx, day: dt.date) -> bool:
    """Grant one batch of members (see ``release_grants``); False when none are left."""
    async with ctx.db.write() as session:
        release = await session.get_one(Release, day, with_for_update=True)
        now = ctx.now()
        batch = await release_grants.grant_batch(
            session,
            day=day,
            lo=release.member_cursor,
            size=ctx.rules.release_batch_size,
            fraction_bp=release.fraction_bp,
            price=Price(release.price_pool_fen, release.price_points),
            now=now,
            expires=now + dt.timedelta(days=ctx.rules.voucher_ttl_days),
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
        release.member_cursor = batch.hi
    return True


async def _merchant_batch(ctx: Ctx, day: dt.date) -> bool:
    """Convert one batch of merchants' points into settlement; False when none are left.

    A merchant's points are spread over its per-shard rows, and each row is only written under
    its shard's lock; so this takes every shard's lock, in order (the order purchases can never
    contradict, as they hold one shard at most), and releases each merchant from its total.
    Purchases pause for the few milliseconds a batch takes, once a day.
    """
    async with ctx.db.write() as session:
        release = await session.get_one(Release, day, with_for_update=True)
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
                .where(MerchantBalance.merchant_id.in_(ids), MerchantBalance.points > 0)
                .order_by(MerchantBalance.merchant_id, MerchantBalance.points.desc())
            )
        ).all()
        holdings: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for merchant_id, shard, points in rows:
            holdings[merchant_id].append((shard, points))
        target = journal.pick_shard(ctx.rules.shards)
        postings: list[Posting] = []
        burned_total = fen_total = granted = 0
        for merchant_id, parts in holdings.items():
            grant = release_grant(sum(p for _s, p in parts), release.fraction_bp, price)
            if grant is None:
                continue
            left = grant.points_burned
            for shard, points in parts:
                take = min(points, left)
                left -= take
                if take:
                    await session.execute(
                        update(MerchantBalance)
                        .where(
                            MerchantBalance.merchant_id == merchant_id,
                            MerchantBalance.shard == shard,
                        )
                        .values(points=MerchantBalance.points - take)
                    )
            await credit_merchant(session, merchant_id, target, 0, grant.vouchers_fen)
            postings += [
                (journal.merchant_points(merchant_id), POINTS, -grant.points_burned),
                (journal.merchant_settlement(merchant_id), FEN, grant.vouchers_fen),
            ]
            burned_total += grant.points_burned
            fen_total += grant.vouchers_fen
            granted += 1
        if postings:
            postings += [(journal.ISSUANCE, POINTS, burned_total), (journal.POOL, FEN, -fen_total)]
            await journal.post(
                session,
                shard=target,
                kind="release",
                ref=f"release:{day.isoformat()}:merchants:{ids[0]}-{ids[-1]}",
                postings=postings,
                now=ctx.now(),
            )
        release.merchant_cursor = ids[-1]
        release.merchants_granted += granted
        release.points_burned += burned_total
        release.vouchers_fen += fen_total
    return True


async def expire_lots(ctx: Ctx, batch: int = 500) -> int:
    """Return expired vouchers' value to the pool; returns how many lots expired."""
    total = 0
    while True:
        now = ctx.now()
        async with ctx.db.write() as session:
            member_ids = sorted(
                set(
                    (
                        await session.scalars(
                            select(VoucherLot.member_id)
                            .where(VoucherLot.expires_at <= now, VoucherLot.remaining_fen > 0)
                            .limit(batch)
                        )
                    ).all()
                )
            )
            if not member_ids:
                return total
            # Members first, then their lots, then the shard: the order redemptions lock in.
            await session.execute(
                select(Member.id)
                .where(Member.id.in_(member_ids))
                .order_by(Member.id)
                .with_for_update()
            )
            lots = (
                await session.scalars(
                    select(VoucherLot)
                    .where(
                        VoucherLot.member_id.in_(member_ids),
                        VoucherLot.expires_at <= now,
                        VoucherLot.remaining_fen > 0,
                    )
                    .with_for_update()
                )
            ).all()
            per_member: dict[int, int] = defaultdict(int)
            for lot in lots:
                per_member[lot.member_id] += lot.remaining_fen
                lot.remaining_fen = 0
            postings: list[Posting] = [
                (journal.member_vouchers(m), FEN, -fen) for m, fen in sorted(per_member.items())
            ]
            for member_id, fen in per_member.items():
                await session.execute(
                    update(Member)
                    .where(Member.id == member_id)
                    .values(vouchers_fen=Member.vouchers_fen - fen)
                )
            postings.append((journal.POOL, FEN, sum(per_member.values())))
            await journal.post(
                session,
                shard=journal.pick_shard(ctx.rules.shards),
                kind="expiry",
                ref=f"expiry:{now.isoformat()}:{member_ids[0]}",
                postings=postings,
                now=now,
            )
            total += len(lots)


async def notify_expiring(ctx: Ctx, batch: int = 1000) -> int:
    """One ``voucher.expiring`` event per member whose vouchers expire within the notice window."""
    total = 0
    while True:
        now = ctx.now()
        horizon = now + dt.timedelta(days=ctx.rules.expiring_notice_days)
        async with ctx.db.write() as session:
            lots = (
                await session.scalars(
                    select(VoucherLot)
                    .where(
                        VoucherLot.expiring_notified.is_(False),
                        VoucherLot.remaining_fen > 0,
                        VoucherLot.expires_at > now,
                        VoucherLot.expires_at <= horizon,
                    )
                    .order_by(VoucherLot.id)
                    .limit(batch)
                )
            ).all()
            if not lots:
                return total
            per_member: dict[int, tuple[int, dt.datetime]] = {}
            for lot in lots:
                fen, first = per_member.get(lot.member_id, (0, lot.expires_at))
                per_member[lot.member_id] = (fen + lot.remaining_fen, min(first, lot.expires_at))
                lot.expiring_notified = True
            await events.emit_many(
                session,
                [
                    {
                        "type": events.VOUCHER_EXPIRING,
                        "member_id": member_id,
                        "merchant_id": None,
                        "payload": {"vouchers_fen": fen, "expires_at": first.isoformat()},
                        "created_at": now,
                    }
                    for member_id, (fen, first) in sorted(per_member.items())
                ],
            )
            total += len(per_member)


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
    return ReleaseOut(
        date=day,
        state=release.state,
        members_granted=release.members_granted,
        merchants_granted=release.merchants_granted,
        points_burned=release.points_burned,
        vouchers_fen=release.vouchers_fen,
        expired_lots=expired,
        expiring_notices=expiring,
    )
