"""What the journal implies about the other tables, checked row by row (issue 13).

A purchase entry (``purchase:<id>``) implies a purchase row whose figures give exactly the
entry's postings, and a ``points.earned`` event; a redemption entry (``redemption:<id>``)
implies a redemption row, the purchase row of its paid part, a code in state ``used`` and a
``voucher.redeemed`` event; every member a release entry grants vouchers implies a
``voucher.granted`` event; a refund entry (``refund:<id>``, issue 11) implies a refund row
whose figures give exactly its postings, and no purchase is refunded beyond its amount or its
points. And back: every purchase, redemption and refund row is booked by exactly one entry,
and the feed's positions have no holes. So a used code set back to live, a deleted event, or
a purchase row edited after the fact is named, not only a bad balance.

Memory stays small at scale: which purchases and redemptions were booked, and which have their
event, are bitmaps over their (dense, autoincrement) ids — 100 million purchases take 12.5 MB.
Every implied event is expected, except for entries older than the horizon pruning recorded
(``feed_state.pruned_before``, set by ``events.prune``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from ledger import events, journal, refunds
from ledger.context import Ctx
from ledger.schema import (
    Event,
    FeedState,
    JournalEntry,
    Purchase,
    PurchaseRefund,
    Redemption,
    RedemptionCode,
)

PAGE = 5000


class Bits:
    """A growable set of non-negative ints, one bit each."""

    def __init__(self) -> None:
        self._bytes = bytearray()

    def add(self, n: int) -> bool:
        """Set bit ``n``; False if it was already set."""
        byte, bit = divmod(n, 8)
        if byte >= len(self._bytes):
            self._bytes.extend(bytes(max(byte + 1 - len(self._bytes), len(self._bytes))))
        seen = bool(self._bytes[byte] >> bit & 1)
        self._bytes[byte] |= 1 << bit
        return not seen

    def __contains__(self, n: int) -> bool:
        byte, bit = divmod(n, 8)
        return byte < len(self._bytes) and bool(self._bytes[byte] >> bit & 1)


def purchase_postings(p: Purchase) -> list[journal.Posting]:
    """The postings a purchase row books (as ``purchases._postings`` makes them)."""
    minted = p.member_points + p.merchant_points
    postings: list[journal.Posting] = [
        (journal.CONCESSIONS, journal.FEN, -p.concession_fen),
        (journal.POOL, journal.FEN, p.concession_fen),
        (journal.ISSUANCE, journal.POINTS, -minted),
        (journal.member_points(p.member_id), journal.POINTS, p.member_points),
        (journal.merchant_points(p.merchant_id), journal.POINTS, p.merchant_points),
    ]
    return [x for x in postings if x[2] != 0]


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return sorted(tuple(x) for x in a) == sorted(tuple(x) for x in b)


def _member_release_day(ref: str) -> str | None:
    """``2026-11-20`` of ``release:2026-11-20:members:1-500`` (or of the share-value airdrop's
    ``airdrop:2026-11-20:members:…``, whose grants carry events too); None for other entries."""
    parts = ref.split(":")
    member_batch = len(parts) >= 3 and parts[0] in {"release", "airdrop"} and parts[2] == "members"
    return parts[1] if member_batch else None


def _granted_members(e: JournalEntry) -> list[int]:
    """Members a release entry credits vouchers to (each one grant, one event)."""
    return [
        int(account.split(":")[1])
        for account, unit, amount in e.postings
        if unit == journal.FEN and amount > 0 and account.endswith(":vouchers")
    ]


async def _over_refunded(ctx: Ctx, problems: list[str]) -> bool:
    """The first purchase its refunds took more of than it had (fen or points)."""
    totals = (
        select(
            PurchaseRefund.purchase_id.label("pid"),
            func.sum(PurchaseRefund.amount_fen).label("fen"),
            func.sum(PurchaseRefund.concession_fen).label("concession"),
            func.sum(PurchaseRefund.member_points).label("member_points"),
            func.sum(PurchaseRefund.merchant_points).label("merchant_points"),
        )
        .group_by(PurchaseRefund.purchase_id)
        .subquery()
    )
    async with ctx.db.read() as session:
        over = await session.scalar(
            select(Purchase.id)
            .join(totals, totals.c.pid == Purchase.id)
            .where(
                (totals.c.fen > Purchase.amount_fen)
                | (totals.c.concession > Purchase.concession_fen)
                | (totals.c.member_points > Purchase.member_points)
                | (totals.c.merchant_points > Purchase.merchant_points)
            )
            .order_by(Purchase.id)
            .limit(1)
        )
    if over is None:
        return False
    problems.append(f"purchase {over}: its refunds take back more than it booked")
    return True


def _ref_id(ref: str, prefix: str) -> int | None:
    rest = ref.removeprefix(prefix)
    return int(rest) if rest != ref and rest.isdigit() else None


class RowChecker:
    """Fed each page of journal entries by the verifier's walk; ``finish`` checks the rest."""

    def __init__(self) -> None:
        self.booked_purchases = Bits()
        self.booked_redemptions = Bits()
        self.booked_refunds = Bits()
        self.earned = Bits()  # purchase ids that have their points.earned event
        self.redeemed = Bits()  # redemption ids that have their voucher.redeemed event
        # voucher.granted events per release date, and the grants release entries imply: counts
        # only (a set per member and day would not fit at 12 million members); a date whose
        # counts differ is searched for its first missing member afterwards.
        self.granted: Counter[str] = Counter()
        self.grants: Counter[str] = Counter()
        # Entries before this moment imply no event (a pruned feed); None: all of them do.
        self.events_since: dt.datetime | None = None
        self.purchases = self.redemptions = 0

    async def prepare(self, ctx: Ctx) -> None:
        """Read the implied event types once, into bitmaps (events carry the ids as payload)."""
        async with ctx.db.read() as session:
            self.events_since = await session.scalar(
                select(FeedState.pruned_before).where(FeedState.id == 1)
            )
        after = 0
        wanted = (events.POINTS_EARNED, events.VOUCHER_REDEEMED, events.VOUCHER_GRANTED)
        while True:
            async with ctx.db.read() as session:
                rows = (
                    await session.execute(
                        select(Event.id, Event.type, Event.member_id, Event.payload)
                        .where(Event.id > after, Event.type.in_(wanted))
                        .order_by(Event.id)
                        .limit(PAGE)
                    )
                ).all()
            if not rows:
                return
            for _id, type_, member_id, payload in rows:
                if type_ == events.POINTS_EARNED and isinstance(payload.get("purchase_id"), int):
                    self.earned.add(payload["purchase_id"])
                elif type_ == events.VOUCHER_REDEEMED and isinstance(
                    payload.get("redemption_id"), int
                ):
                    self.redeemed.add(payload["redemption_id"])
                elif type_ == events.VOUCHER_GRANTED and member_id is not None:
                    self.granted[str(payload.get("release_date"))] += 1
            after = rows[-1][0]

    def _evented(self, e: JournalEntry) -> bool:
        return self.events_since is None or e.created_at >= self.events_since

    async def page(self, ctx: Ctx, entries: Sequence[JournalEntry], problems: list[str]) -> None:
        """Check one page of entries against the rows they imply; first problem wins."""
        bought = {e.id: i for e in entries if (i := _ref_id(e.ref, "purchase:")) is not None}
        redeemed = {e.id: i for e in entries if (i := _ref_id(e.ref, "redemption:")) is not None}
        refunded = {
            e.id: i
            for e in entries
            if e.kind == refunds.KIND and (i := _ref_id(e.ref, "refund:")) is not None
        }
        async with ctx.db.read() as session:
            refund_rows = {
                r.id: r
                for r in (
                    await session.scalars(
                        select(PurchaseRefund).where(PurchaseRefund.id.in_(set(refunded.values())))
                    )
                ).all()
            }
            redemptions = {
                r.id: r
                for r in (
                    await session.scalars(
                        select(Redemption).where(Redemption.id.in_(set(redeemed.values())))
                    )
                ).all()
            }
            wanted = set(bought.values()) | {
                r.purchase_id for r in redemptions.values() if r.purchase_id is not None
            }
            purchases = {
                p.id: p
                for p in (await session.scalars(select(Purchase).where(Purchase.id.in_(wanted))))
            }
            codes = {
                c.id: c
                for c in (
                    await session.scalars(
                        select(RedemptionCode).where(
                            RedemptionCode.id.in_({r.code_id for r in redemptions.values()})
                        )
                    )
                )
            }
        for e in entries:
            where = f"journal entry {e.id} ({e.ref})"
            problem: str | None = None
            if e.id in bought:
                problem = self._purchase(e, where, purchases.get(bought[e.id]))
            elif e.id in redeemed:
                r = redemptions.get(redeemed[e.id])
                p = purchases.get(r.purchase_id) if r and r.purchase_id else None
                problem = self._redemption(e, where, r, p, codes.get(r.code_id) if r else None)
            elif e.id in refunded:
                problem = self._refund(e, where, refunded[e.id], refund_rows.get(refunded[e.id]))
            elif e.kind == "release" and self._evented(e):
                day = _member_release_day(e.ref)
                if day is not None:
                    self.grants[day] += len(_granted_members(e))
            if problem:
                problems.append(problem)
                return

    def _purchase(self, e: JournalEntry, where: str, p: Purchase | None) -> str | None:
        pid = _ref_id(e.ref, "purchase:")
        if p is None:
            return f"{where}: purchase {pid} is missing"
        self.purchases += 1
        if not self.booked_purchases.add(p.id):
            return f"{where}: purchase {p.id} is booked twice"
        if not _same(purchase_postings(p), e.postings):
            return (
                f"purchase {p.id}: its row (amount {p.amount_fen}, concession {p.concession_fen},"
                f" points {p.member_points}+{p.merchant_points}) disagrees with {where}"
            )
        if self._evented(e) and p.id not in self.earned:
            return f"{where}: its {events.POINTS_EARNED} event is missing"
        return None

    def _refund(
        self, e: JournalEntry, where: str, rid: int, r: PurchaseRefund | None
    ) -> str | None:
        if r is None:
            return f"{where}: refund {rid} is missing"
        if not self.booked_refunds.add(r.id):
            return f"{where}: refund {r.id} is booked twice"
        if not _same(refunds.postings(r), e.postings):
            return (
                f"refund {r.id}: its row (amount {r.amount_fen}, concession {r.concession_fen},"
                f" points {r.member_points}+{r.merchant_points}) disagrees with {where}"
            )
        return None

    def _redemption(
        self,
        e: JournalEntry,
        where: str,
        r: Redemption | None,
        p: Purchase | None,
        code: RedemptionCode | None,
    ) -> str | None:
        rid = _ref_id(e.ref, "redemption:")
        if r is None:
            return f"{where}: redemption {rid} is missing"
        self.redemptions += 1
        if not self.booked_redemptions.add(r.id):
            return f"{where}: redemption {r.id} is booked twice"
        if p is None:
            return f"redemption {r.id}: its purchase {r.purchase_id} is missing"
        self.purchases += 1
        if not self.booked_purchases.add(p.id):
            return f"redemption {r.id}: purchase {p.id} is booked twice"
        applied = r.vouchers_applied_fen
        vouchers: list[journal.Posting] = (
            [
                (journal.member_vouchers(r.member_id), journal.FEN, -applied),
                (journal.merchant_settlement(r.merchant_id), journal.FEN, applied),
            ]
            if applied
            else []
        )
        if (
            r.bill_fen != applied + r.paid_fen
            or p.amount_fen != r.paid_fen
            or (p.member_id, p.merchant_id) != (r.member_id, r.merchant_id)
            or p.member_points != r.points_earned
            or not _same(vouchers + purchase_postings(p), e.postings)
        ):
            return (
                f"redemption {r.id}: its row (bill {r.bill_fen}, vouchers {applied}, paid "
                f"{r.paid_fen}) or its purchase {p.id} disagrees with {where}"
            )
        if code is None or code.state != "used" or code.used_at is None:
            state = "missing" if code is None else code.state
            return f"redemption {r.id}: its code {r.code_id} is {state}, not used"
        if self._evented(e) and r.id not in self.redeemed:
            return f"{where}: its {events.VOUCHER_REDEEMED} event is missing"
        return None

    async def _missing_grant(self, ctx: Ctx, day: str, problems: list[str]) -> None:
        """The first member a release entry of ``day`` grants vouchers without an event."""
        evented = Bits()
        after = 0
        while True:
            async with ctx.db.read() as session:
                rows = (
                    await session.execute(
                        select(Event.id, Event.member_id, Event.payload)
                        .where(Event.id > after, Event.type == events.VOUCHER_GRANTED)
                        .order_by(Event.id)
                        .limit(PAGE)
                    )
                ).all()
            if not rows:
                break
            for _id, member_id, payload in rows:
                if member_id is not None and str(payload.get("release_date")) == day:
                    evented.add(int(member_id))
            after = rows[-1][0]
        async with ctx.db.read() as session:
            entries = (
                await session.scalars(
                    select(JournalEntry)
                    .where(
                        JournalEntry.kind == "release",
                        JournalEntry.ref.like(f"release:{day}:members:%"),
                    )
                    .order_by(JournalEntry.id)
                )
            ).all()
        for e in entries:
            for member in _granted_members(e):
                if member not in evented:
                    problems.append(
                        f"journal entry {e.id} ({e.ref}): the {events.VOUCHER_GRANTED} event of "
                        f"member {member} is missing"
                    )
                    return
        problems.append(
            f"release of {day}: {self.grants[day]} grants but {self.granted[day]} "
            f"{events.VOUCHER_GRANTED} events"
        )

    async def finish(self, ctx: Ctx, problems: list[str]) -> None:
        """Grants without events, rows no entry books, used codes without a redemption, and
        holes in the feed."""
        for day in sorted(set(self.grants) | set(self.granted)):
            if self.grants[day] != self.granted[day]:
                await self._missing_grant(ctx, day, problems)
                return
        for model, booked, name in (
            (Purchase, self.booked_purchases, "purchase"),
            (Redemption, self.booked_redemptions, "redemption"),
            (PurchaseRefund, self.booked_refunds, "refund"),
        ):
            after = 0
            while True:
                async with ctx.db.read() as session:
                    ids = (
                        await session.scalars(
                            select(model.id).where(model.id > after).order_by(model.id).limit(PAGE)
                        )
                    ).all()
                if not ids:
                    break
                for row_id in ids:
                    if row_id not in booked:
                        problems.append(f"{name} {row_id}: no journal entry books it")
                        return
                after = ids[-1]
        if await _over_refunded(ctx, problems):
            return
        async with ctx.db.read() as session:
            used = await session.scalar(
                select(func.count(RedemptionCode.id)).where(RedemptionCode.state == "used")
            )
            if (used or 0) != self.redemptions:
                orphan = await session.scalar(
                    select(RedemptionCode.id)
                    .outerjoin(Redemption, Redemption.code_id == RedemptionCode.id)
                    .where(RedemptionCode.state == "used", Redemption.id.is_(None))
                    .order_by(RedemptionCode.id)
                    .limit(1)
                )
                problems.append(f"code {orphan}: used, but no redemption used it")
                return
            last = await session.scalar(select(FeedState.last_seq).where(FeedState.id == 1))
            low, high, count = (
                await session.execute(
                    select(func.min(Event.seq), func.max(Event.seq), func.count(Event.seq))
                )
            ).one()
        gap = low is not None and high is not None and high - low + 1 != count
        if gap or (high or 0) != (last or 0):
            await self._feed_hole(ctx, int(low or 1), int(last or 0), problems)

    async def _feed_hole(self, ctx: Ctx, low: int, last: int, problems: list[str]) -> None:
        expected = low
        while True:
            async with ctx.db.read() as session:
                seqs = (
                    await session.scalars(
                        select(Event.seq)
                        .where(Event.seq >= expected)
                        .order_by(Event.seq)
                        .limit(PAGE)
                    )
                ).all()
            for seq in seqs:
                if seq != expected:
                    problems.append(f"events: feed position {expected} is missing (deleted event)")
                    return
                expected += 1
            if len(seqs) < PAGE:
                break
        if expected <= last:
            problems.append(
                f"events: the feed gave out position {last}, the newest event has {expected - 1}"
            )
