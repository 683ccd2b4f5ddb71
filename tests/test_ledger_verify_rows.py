"""``verify`` also holds the other tables to what the journal implies (issue 13), on SQLite and
PostgreSQL. Each copy of one populated ledger is spoiled one way — a used code set back to live,
a purchase row edited, a purchase row invented, a redemption row edited, a points.earned event,
a voucher.granted event and a feed position deleted — and verify names exactly that row first,
while the unspoiled ledger passes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select, text

from ledger import events, verify
from ledger.context import Ctx
from ledger.db import Database
from ledger.principal import SYSTEM
from ledger.schema import Event, JournalEntry, Redemption
from tests.conftest import World
from tests.ledger_support import FixedClock, buy, cli, pay_with_code
from tests.test_ledger_transparency import clones


async def populate(world: World, clock: FixedClock) -> int:
    """Purchases, a release, a paid redemption with vouchers, and 88 days later a release that
    warns of expiring vouchers; the feed is read so every event has a position. Returns the
    redemption's id."""
    s = world.service
    for n in range(8):
        shop = (world.merchant_id, world.other_merchant_id)[n % 2]
        await buy(s, shop, world.member_ids[n % 3], 40_000 + 311 * n, f"rows-{n:03d}")
        clock.advance(minutes=3)
    await s.release(SYSTEM)
    clock.advance(hours=2)
    receipt = await pay_with_code(s, world.merchant_id, world.member_ids[0], 20_000, "rows-redeem")
    assert receipt.vouchers_applied_fen > 0
    clock.advance(days=88)
    await s.release(SYSTEM)
    await s.events(SYSTEM, 0, 1000)
    return receipt.redemption_id


@dataclass(frozen=True)
class Way:
    name: str
    spoil: Callable[[Database], Awaitable[str]]  # spoils a copy; returns what must be named


async def _one(db: Database, sql: str, **params: object) -> int:
    async with db.read() as session:
        value = (await session.execute(text(sql), params)).scalar_one()
    return int(value)


async def _run(db: Database, sql: str, **params: object) -> None:
    async with db.write() as session:
        await session.execute(text(sql), params)


async def _purchase_entry(db: Database) -> tuple[int, int]:
    """(entry id, purchase id) of the first purchase entry."""
    async with db.read() as session:
        e = await session.scalar(
            select(JournalEntry).where(JournalEntry.kind == "purchase").order_by(JournalEntry.id)
        )
    assert e is not None
    return e.id, int(e.ref.removeprefix("purchase:"))


def ways(redemption_id: int) -> list[Way]:
    async def code_back_to_live(db: Database) -> str:
        code = await _one(db, "SELECT code_id FROM redemptions WHERE id = :r", r=redemption_id)
        await _run(
            db,
            "UPDATE redemption_codes SET state = 'live', used_at = NULL WHERE id = :c",
            c=code,
        )
        return f"redemption {redemption_id}: its code {code} is live, not used"

    async def purchase_edited(db: Database) -> str:
        _entry, purchase = await _purchase_entry(db)
        await _run(
            db, "UPDATE purchases SET member_points = member_points + 1 WHERE id = :p", p=purchase
        )
        return f"purchase {purchase}: its row"

    async def purchase_invented(db: Database) -> str:
        _entry, purchase = await _purchase_entry(db)
        await _run(
            db,
            "INSERT INTO purchases (merchant_id, member_id, amount_fen, concession_fen, "
            "member_points, merchant_points, price_pool_fen, price_points, green_tags, "
            "created_at) SELECT merchant_id, member_id, amount_fen, concession_fen, "
            "member_points, merchant_points, price_pool_fen, price_points, green_tags, "
            "created_at FROM purchases WHERE id = :p",
            p=purchase,
        )
        newest = await _one(db, "SELECT max(id) FROM purchases")
        return f"purchase {newest}: no journal entry books it"

    async def redemption_edited(db: Database) -> str:
        await _run(
            db,
            "UPDATE redemptions SET vouchers_applied_fen = vouchers_applied_fen - 1, "
            "paid_fen = paid_fen + 1 WHERE id = :r",
            r=redemption_id,
        )
        return f"redemption {redemption_id}: its row"

    async def earned_event_deleted(db: Database) -> str:
        entry, purchase = await _purchase_entry(db)
        async with db.read() as session:
            found = [
                e.id
                for e in (
                    await session.scalars(select(Event).where(Event.type == events.POINTS_EARNED))
                ).all()
                if e.payload.get("purchase_id") == purchase
            ]
        assert len(found) == 1
        await _run(db, "DELETE FROM events WHERE id = :e", e=found[0])
        return f"journal entry {entry} (purchase:{purchase}): its points.earned event is missing"

    async def granted_event_deleted(db: Database) -> str:
        async with db.read() as session:
            granted = await session.scalar(
                select(Event).where(Event.type == events.VOUCHER_GRANTED).order_by(Event.id)
            )
        assert granted is not None
        await _run(db, "DELETE FROM events WHERE id = :e", e=granted.id)
        return f"the voucher.granted event of member {granted.member_id} is missing"

    async def feed_position_deleted(db: Database) -> str:
        async with db.read() as session:
            warning = await session.scalar(
                select(Event).where(Event.type == events.VOUCHER_EXPIRING).order_by(Event.id)
            )
        assert warning is not None and warning.seq is not None
        await _run(db, "DELETE FROM events WHERE id = :e", e=warning.id)
        return f"events: feed position {warning.seq} is missing"

    return [
        Way("a used code set back to live", code_back_to_live),
        Way("a purchase row edited", purchase_edited),
        Way("a purchase row invented", purchase_invented),
        Way("a redemption row edited", redemption_edited),
        Way("a points.earned event deleted", earned_event_deleted),
        Way("a voucher.granted event deleted", granted_event_deleted),
        Way("a feed position deleted", feed_position_deleted),
    ]


async def test_verify_names_the_first_row_the_journal_disagrees_with(
    world: World, clock: FixedClock, database_url: str
) -> None:
    redemption_id = await populate(world, clock)
    async with world.service.ctx.db.read() as session:
        assert await session.get(Redemption, redemption_id) is not None
    assert (await verify.verify(world.service.ctx)).ok
    await world.service.ctx.db.dispose()
    spoilers = ways(redemption_id)
    async with clones(database_url, len(spoilers)) as urls:
        for way, url in zip(spoilers, urls, strict=True):
            db = Database(url)
            try:
                named = await way.spoil(db)
                report = await verify.verify(Ctx(db), partitions=2)
            finally:
                await db.dispose()
            assert not report.ok, way.name
            assert named in report.problems[0], (way.name, named, report.problems)
        # The console script says the same and exits 1.
        run = await cli(urls[0], "verify")
        assert run.code == 1 and "is live, not used" in run.err.splitlines()[0], run.err
