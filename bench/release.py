"""The daily release at alliance scale: members/s beside one bare UPDATE of the same rows.

    .venv/bin/python -m bench.release --db sqlite --members 1000000
    .venv/bin/python -m bench.release --db postgres --members 1000000 --batch 10000
    .venv/bin/python -m bench.release --members 20000 --verify      # small, and verify after
    .venv/bin/python -m bench.release --policy airdrop              # the 共享购 policy (issue 13)
    .venv/bin/python -m bench.release --exit-cap                    # the exit cap (issue 13)

Setup (not timed): ``--members`` members holding between 100 and 99,999 points (spread by id),
``--merchants`` merchants holding points, a pool of one fen per point plus a tenth, and seed
journal entries backing every holding so ``verify`` can pass. Then, timed:

- *baseline*: one ``UPDATE members SET points = points + 1 WHERE points > 0`` and its commit
  (undone afterwards, untimed): the least any release touching every holder's row costs here.
- *release*: ``LedgerService.release`` for the day, as an operator runs it: every member's
  grant, lot, ``voucher.granted`` event and journal entry, then the merchants, expiry, notices.
  ``--policy airdrop``: each holder also has one purchase (its share value), and 100,000 yuan
  of the pool is divided among them by share value.
  ``--exit-cap``: each holder's points are two mint lots (the older half at 1 fen per point,
  the newer half at 1 fen per point for odd ids and 0.5 for even ones), and the cap is on at 2x:
  every batch also trims the lots by the day's 1 % and converts the even ids' newer lots (the
  day's price is 1.1 fen per point, 2.2x their mint price), half the holders.
- *feed positions*: what the first feed read after the release does: number its events.
- *expiring notices*: 87 days later, the ``voucher.expiring`` events for every lot.
- *expiry*: 90 days later, every lot expires back into the pool.

Each is printed as members/s and as a ratio to the baseline's rows/s, with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time

from sqlalchemy import DateTime, bindparam, func, select, text, update

from bench._common import insert_members, scratch_database, table
from ledger import events, journal, releases, verify
from ledger.journal import FEN, POINTS, Posting
from ledger.principal import SYSTEM
from ledger.rules import Rules
from ledger.schema import Member, MerchantBalance
from ledger.service import LedgerService
from tests.ledger_support import FixedClock

SEED_BATCH = 10_000


async def seed_merchants(svc: LedgerService, count: int) -> None:
    from ledger.models import MerchantIn

    for n in range(count):
        await svc.create_merchant(
            SYSTEM,
            MerchantIn(name=f"商家{n}", category="grocery", lat=30.23 + n * 1e-4, lon=119.72),
        )


async def seed_holdings(svc: LedgerService, members: int, merchants: int) -> int:
    """Points for everyone, backed by journal entries; returns the points in circulation."""
    db = svc.ctx.db
    await insert_members(db, members)
    await seed_merchants(svc, merchants)
    async with db.write() as session:
        await session.execute(update(Member).values(points=(Member.id * 7919) % 99_900 + 100))
    now = svc.ctx.now()
    total = 0
    after = 0
    while True:
        async with db.write() as session:
            rows = (
                await session.execute(
                    select(Member.id, Member.points)
                    .where(Member.id > after)
                    .order_by(Member.id)
                    .limit(SEED_BATCH)
                )
            ).all()
            if not rows:
                break
            points = sum(p for _i, p in rows)
            postings: list[Posting] = [(journal.member_points(i), POINTS, p) for i, p in rows]
            postings += [
                (journal.ISSUANCE, POINTS, -points),
                (journal.POOL, FEN, points + points // 10),
                (journal.CONCESSIONS, FEN, -(points + points // 10)),
            ]
            await journal.post(
                session, shard=0, kind="seed", ref=f"seed:{after}", postings=postings, now=now
            )
            total += points
            after = rows[-1][0]
    async with db.write() as session:
        ids = (await session.scalars(text("SELECT id FROM merchants ORDER BY id"))).all()
        shop_points = 0
        postings = []
        for k, merchant_id in enumerate(ids):
            points = 10_000 + k
            await session.execute(
                MerchantBalance.__table__.insert().values(
                    merchant_id=merchant_id,
                    shard=k % svc.ctx.rules.shards,
                    points=points,
                    settlement_fen=0,
                )
            )
            postings.append((journal.merchant_points(merchant_id), POINTS, points))
            shop_points += points
        if postings:
            postings += [
                (journal.ISSUANCE, POINTS, -shop_points),
                (journal.POOL, FEN, shop_points),
                (journal.CONCESSIONS, FEN, -shop_points),
            ]
            await journal.post(
                session, shard=1, kind="seed", ref="seed:merchants", postings=postings, now=now
            )
        total += shop_points
    return total


async def seed_purchases(svc: LedgerService) -> None:
    """One purchase per holder at the first merchant (share value for the airdrop policy);
    rows only: the pool and points were seeded by journal entries already."""
    async with svc.ctx.db.write() as session:
        await session.execute(
            text(
                "INSERT INTO purchases (merchant_id, member_id, amount_fen, concession_fen,"
                " member_points, merchant_points, price_pool_fen, price_points, green_tags,"
                " created_at) SELECT (SELECT min(id) FROM merchants), id, points * 10, points,"
                " points, 0, 1, 1, '[]', :now FROM members WHERE points > 0"
            ).bindparams(bindparam("now", type_=DateTime())),
            {"now": svc.ctx.now()},
        )


async def seed_lots(svc: LedgerService) -> None:
    """Two mint lots per holder holding exactly their points (see the module docstring)."""
    async with svc.ctx.db.write() as session:
        for part, price_points in (
            ("points / 2", "1"),
            ("points - points / 2", "CASE WHEN id % 2 = 0 THEN 2 ELSE 1 END"),
        ):
            await session.execute(
                text(
                    "INSERT INTO mint_lots (member_id, purchase_id, points_minted, points_left,"
                    " mint_pool_fen, mint_points, capped_on, capped_points, capped_fen)"
                    f" SELECT id, 0, {part}, {part}, 1, {price_points}, NULL, 0, 0"
                    " FROM members WHERE points > 0 ORDER BY id"
                )
            )


async def timed_baseline(svc: LedgerService) -> tuple[float, int]:
    db = svc.ctx.db
    async with db.read() as session:
        holders = int(await session.scalar(select(func.count()).where(Member.points > 0)) or 0)
    start = time.perf_counter()
    async with db.write() as session:
        await session.execute(
            update(Member).where(Member.points > 0).values(points=Member.points + 1)
        )
    seconds = time.perf_counter() - start
    async with db.write() as session:
        await session.execute(
            update(Member).where(Member.points > 0).values(points=Member.points - 1)
        )
    return seconds, holders


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} (1 / 5 min)"


async def run(
    kind: str, members: int, merchants: int, batch: int, check: bool, policy: str, cap: bool
) -> None:
    async with scratch_database(kind, "release") as url:
        clock = FixedClock(dt.datetime(2026, 6, 1, 4, 0))  # noon in Shanghai
        rules = Rules(
            release_batch_size=batch,
            release_policy=policy,  # type: ignore[arg-type]
            airdrop_daily_fen=10_000_000,  # 100,000 yuan a day
            exit_cap=cap,
        )
        svc = await LedgerService.open(url, rules)
        svc.ctx.clock = clock
        try:
            t0 = time.perf_counter()
            await seed_holdings(svc, members, merchants)
            if policy == "airdrop":
                await seed_purchases(svc)
            if cap:
                await seed_lots(svc)
            print(
                f"seeded {members:,} members in {time.perf_counter() - t0:.1f} s", file=sys.stderr
            )
            base_s, holders = await timed_baseline(svc)
            base_rate = holders / base_s

            load_before = load()
            start = time.perf_counter()
            result = await svc.release(SYSTEM, svc.ctx.today())
            release_s = time.perf_counter() - start
            print(
                f"[{kind}] release {release_s:.1f} s = {holders / release_s:,.0f} members/s; "
                f"baseline {base_rate:,.0f} rows/s; {load()}",
                file=sys.stderr,
                flush=True,
            )
            assert result.members_granted == holders or policy == "airdrop", result

            start = time.perf_counter()
            sequenced = await events.sequence_pending(svc.ctx.db)
            sequence_s = time.perf_counter() - start

            clock.advance(days=87)
            start = time.perf_counter()
            notices = await releases.notify_expiring(svc.ctx)
            notice_s = time.perf_counter() - start
            clock.advance(days=3)
            start = time.perf_counter()
            expired = await releases.expire_lots(svc.ctx)
            expiry_s = time.perf_counter() - start
            load_after = load()

            rows = [
                ("database", kind),
                ("policy", policy + (" + exit cap 2x" if cap else "")),
                ("members with points", f"{holders:,} (+{merchants:,} merchants)"),
                ("batch", f"{batch:,} members"),
                ("baseline: one bare UPDATE", f"{base_s:.2f} s = {base_rate:,.0f} rows/s"),
                (
                    "release (service, whole day)",
                    f"{release_s:.2f} s = {holders / release_s:,.0f} members/s = "
                    f"{holders / release_s / base_rate:.3f}x baseline",
                ),
                (
                    "feed positions for the events",
                    f"{sequenced:,} in {sequence_s:.2f} s = {sequenced / sequence_s:,.0f}/s",
                ),
                (
                    "expiring notices",
                    f"{notices:,} in {notice_s:.2f} s = {notices / notice_s:,.0f}/s = "
                    f"{notices / notice_s / base_rate:.3f}x baseline",
                ),
                (
                    "expiry",
                    f"{expired:,} lots in {expiry_s:.2f} s = {expired / expiry_s:,.0f}/s = "
                    f"{expired / expiry_s / base_rate:.3f}x baseline",
                ),
                ("12 M members at this rate", f"{12_000_000 / (holders / release_s) / 60:.1f} min"),
                ("load before / after", f"{load_before}; {load_after}"),
            ]
            if check:
                start = time.perf_counter()
                report = await verify.verify(svc.ctx)
                rows.append(
                    (
                        "verify",
                        f"{'ok' if report.ok else report.problems[:3]} "
                        f"({time.perf_counter() - start:.1f} s)",
                    )
                )
            rows.insert(4, ("members granted", f"{result.members_granted:,}"))
            if cap:
                rows.insert(
                    5,
                    (
                        "capped exits",
                        f"{result.capped_points:,} points -> {result.capped_fen:,} fen",
                    ),
                )
            print(table(rows, f"Daily release, {kind}, {policy}"))
        finally:
            await svc.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--members", type=int, default=1_000_000)
    p.add_argument("--merchants", type=int, default=200)
    p.add_argument("--batch", type=int, default=Rules().release_batch_size)
    p.add_argument("--verify", action="store_true", help="run verify afterwards (slow at 1 M)")
    p.add_argument("--policy", choices=["fraction", "airdrop"], default="fraction")
    p.add_argument("--exit-cap", action="store_true", help="mint lots, and the exit cap on at 2x")
    args = p.parse_args()
    asyncio.run(
        run(
            args.db,
            args.members,
            args.merchants,
            args.batch,
            args.verify,
            args.policy,
            args.exit_cap,
        )
    )


if __name__ == "__main__":
    main()
