"""A merchant's statement (对账单/结算单; issue 11, DESIGN.md "Merchants and their money",
Settlement): for local days, what it owes and is owed, carried forward until a payout.

Every line is a sum over rows the journal books one-to-one and ``verify`` holds to their entries
(a purchase row per ``purchase:`` entry and per redemption's paid part, a redemption row per
``redemption:`` entry, an undo row per ``undo:`` entry, a merchant-release row per merchant in a
release entry, a payout row per ``payout:`` entry), so each statement reconciles with the journal
to the fen (tests/test_ledger_statements.py walks the journal to prove it). The rows are read
instead of the entries because a month of one merchant is then an index range, not a walk of
every entry of every merchant.

A line is (local day, kind) with ``credit_fen`` (owed to the merchant) and ``debit_fen`` (owed
by it). Each kind is one ``Source`` in ``SOURCES``; a later kind of correction (a refund) is
one more source, and statements, CSV, totals and the carried balance take it up unchanged.
"""

from __future__ import annotations

import bisect
import calendar
import csv
import datetime as dt
import io
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import merchants
from ledger.context import Ctx
from ledger.errors import InvalidRequest
from ledger.models import PayoutOut, StatementLine, StatementOut, StatementStatus
from ledger.schema import (
    MerchantRelease,
    Payout,
    Purchase,
    PurchaseRefund,
    Redemption,
    RedemptionUndo,
)

EPOCH = dt.datetime(1970, 1, 1)
MAX_DAYS = 366  # one statement spans at most a year of local days

PURCHASES = "purchases"
VOUCHERS_ACCEPTED = "vouchers_accepted"
POINTS_RELEASED = "points_released"
REDEMPTION_UNDONE = "redemption_undone"
PURCHASE_REFUNDED = "purchase_refunded"


def released(
    merchant_id: int, day: dt.date, at: dt.datetime, points: int, fen: int
) -> dict[str, Any]:
    """The ``merchant_releases`` row a release batch writes beside its journal entry."""
    return {
        "merchant_id": merchant_id,
        "release_date": day,
        "created_at": at,
        "points": points,
        "fen": fen,
    }


# --- periods ----------------------------------------------------------------------------------


def parse_period(label: str) -> tuple[dt.date, dt.date]:
    """First and last local day of ``2026-11`` (a month) or ``2026-11-05`` (a day).

    Raises ``InvalidRequest`` for anything else (a day that does not exist, like 2026-02-30).
    """
    try:
        if len(label) == 7:
            year, month = int(label[:4]), int(label[5:7])
            first = dt.date(year, month, 1)
            return first, first.replace(day=calendar.monthrange(year, month)[1])
        day = dt.date.fromisoformat(label)
    except ValueError:
        raise InvalidRequest(
            "a period is a month (2026-11) or a day (2026-11-05)", period=label[:20]
        ) from None
    if len(label) != 10:
        raise InvalidRequest("a period is a month (2026-11) or a day (2026-11-05)")
    return day, day


def period_label(first: dt.date, last: dt.date) -> str:
    """``2026-11`` for a whole month, ``2026-11-05`` for a day, else ``first..last``."""
    if first == last:
        return first.isoformat()
    whole_month = first.day == 1 and (first.year, first.month) == (last.year, last.month)
    if whole_month and last.day == calendar.monthrange(first.year, first.month)[1]:
        return first.strftime("%Y-%m")
    return f"{first.isoformat()}..{last.isoformat()}"


def check_span(first: dt.date, last: dt.date) -> None:
    """Raises ``InvalidRequest`` for a span that ends before it starts or exceeds a year."""
    if last < first:
        raise InvalidRequest("the period ends before it starts", from_date=str(first))
    if (last - first).days >= MAX_DAYS:
        raise InvalidRequest(f"a statement covers at most {MAX_DAYS} days")


# --- sources: one per kind of line ------------------------------------------------------------

# (span index, count, amount_fen, points, credit_fen, debit_fen): one span's sum
Summed = Select[int, int, int, int, int, int]
# (moment, count, amount_fen, points, credit_fen, debit_fen): one row, for kinds with few rows
Dated = Select[dt.datetime, int, int, int, int, int]


@dataclass(frozen=True)
class Source:
    """A kind of statement line and how to read it for the merchant's rows dated in [lo, hi).

    Kinds with many rows (purchases, redemptions) ``sum`` one span in SQL: (index, count,
    amount_fen, points, credit_fen, debit_fen). Kinds with few (a release a day, the odd undo)
    list their ``rows`` (moment, 1, amounts…) once for the whole period, bucketed here: a query
    per day would cost more than the rows.
    """

    kind: str
    sum: Callable[[int, dt.datetime, dt.datetime, int], Summed] | None = None
    rows: Callable[[int, dt.datetime, dt.datetime], Dated] | None = None


def _purchases(merchant_id: int, lo: dt.datetime, hi: dt.datetime, index: int) -> Summed:
    # Plain purchases and the paid part of redemptions alike: the concession is owed on both.
    return select(
        literal(index),
        func.count(),
        func.sum(Purchase.amount_fen),
        literal(0),
        literal(0),
        func.sum(Purchase.concession_fen),
    ).where(
        Purchase.merchant_id == merchant_id,
        Purchase.created_at >= lo,
        Purchase.created_at < hi,
    )


def _vouchers(merchant_id: int, lo: dt.datetime, hi: dt.datetime, index: int) -> Summed:
    return select(
        literal(index),
        func.count(),
        func.sum(Redemption.bill_fen),
        literal(0),
        func.sum(Redemption.vouchers_applied_fen),
        literal(0),
    ).where(
        Redemption.merchant_id == merchant_id,
        Redemption.created_at >= lo,
        Redemption.created_at < hi,
        Redemption.vouchers_applied_fen > 0,
    )


def _released(merchant_id: int, lo: dt.datetime, hi: dt.datetime) -> Dated:
    return select(
        MerchantRelease.created_at,
        literal(1),
        literal(0),
        MerchantRelease.points,
        MerchantRelease.fen,
        literal(0),
    ).where(
        MerchantRelease.merchant_id == merchant_id,
        MerchantRelease.created_at >= lo,
        MerchantRelease.created_at < hi,
    )


def _undone(merchant_id: int, lo: dt.datetime, hi: dt.datetime) -> Dated:
    # The undo posts the negation of the redemption's entry: its vouchers leave the merchant's
    # settlement and the concession on its paid part goes back (ledger/undo.py).
    return (
        select(
            RedemptionUndo.undone_at,
            literal(1),
            -Redemption.bill_fen,
            literal(0),
            -Redemption.vouchers_applied_fen,
            -func.coalesce(Purchase.concession_fen, 0),
        )
        .select_from(RedemptionUndo)
        .join(Redemption, Redemption.id == RedemptionUndo.redemption_id)
        .outerjoin(Purchase, Purchase.id == Redemption.purchase_id)
        .where(
            # Undos are few: walk them by time (ix_redemption_undos_undone_at) and check each
            # one's merchant, rather than every redemption of the merchant (``+ 0`` keeps
            # SQLite's planner off the merchant index: 140 ms of a 100,000-purchase month).
            Redemption.merchant_id + 0 == merchant_id,
            RedemptionUndo.undone_at >= lo,
            RedemptionUndo.undone_at < hi,
        )
    )


def _refunded(merchant_id: int, lo: dt.datetime, hi: dt.datetime) -> Dated:
    # A refund reverses its part of the purchase's entry (ledger/refunds.py): the concession
    # taken back is what the merchant no longer owes. Refunds are few: listed, not summed.
    return select(
        PurchaseRefund.created_at,
        literal(1),
        -PurchaseRefund.amount_fen,
        literal(0),
        literal(0),
        -PurchaseRefund.concession_fen,
    ).where(
        PurchaseRefund.merchant_id == merchant_id,
        PurchaseRefund.created_at >= lo,
        PurchaseRefund.created_at < hi,
    )


SOURCES: tuple[Source, ...] = (
    Source(PURCHASES, sum=_purchases),
    Source(VOUCHERS_ACCEPTED, sum=_vouchers),
    Source(POINTS_RELEASED, rows=_released),
    Source(REDEMPTION_UNDONE, rows=_undone),
    Source(PURCHASE_REFUNDED, rows=_refunded),
)


async def sum_lines(
    session: AsyncSession, merchant_id: int, bounds: Sequence[dt.datetime]
) -> dict[tuple[int, str], StatementLine]:
    """Every source's lines per span [bounds[i], bounds[i+1]); keys (span index, kind).

    One statement per source: for many rows a UNION ALL of one aggregate per local day, each an
    index range read on its own (a CASE over the days grouped in one scan cost SQLite 50× a bare
    SUM); for few rows the rows themselves, bucketed by day here.
    """
    found: dict[tuple[int, str], StatementLine] = {}
    spans = list(itertools.pairwise(bounds))
    for source in SOURCES:
        sums: list[Any] = []
        if source.sum is not None:
            parts = [source.sum(merchant_id, lo, hi, n) for n, (lo, hi) in enumerate(spans)]
            sums = list(await session.execute(parts[0] if len(parts) == 1 else union_all(*parts)))
        elif source.rows is not None:
            dated = await session.execute(source.rows(merchant_id, bounds[0], bounds[-1]))
            sums = [(bisect.bisect_right(bounds, at) - 1, *rest) for at, *rest in dated]
        for index, count, amount, points, credit, debit in sums:
            if not count:
                continue
            was = found.get((int(index), source.kind))
            line = StatementLine(
                kind=source.kind,
                count=int(count),
                amount_fen=int(amount or 0),
                points=int(points or 0),
                credit_fen=int(credit or 0),
                debit_fen=int(debit or 0),
            )
            found[(int(index), source.kind)] = line if was is None else _add(was, line)
    return found


def _add(a: StatementLine, b: StatementLine) -> StatementLine:
    return a.model_copy(
        update={
            "count": a.count + b.count,
            "amount_fen": a.amount_fen + b.amount_fen,
            "points": a.points + b.points,
            "credit_fen": a.credit_fen + b.credit_fen,
            "debit_fen": a.debit_fen + b.debit_fen,
        }
    )


def net(lines: Sequence[StatementLine]) -> int:
    """What the lines leave due to the merchant (negative: due from it), in fen."""
    return sum(line.credit_fen - line.debit_fen for line in lines)


async def due_between(
    session: AsyncSession, merchant_id: int, lo: dt.datetime, hi: dt.datetime
) -> int:
    """Net due (fen) for everything dated in [lo, hi)."""
    if hi <= lo:
        return 0
    return net(list((await sum_lines(session, merchant_id, [lo, hi])).values()))


def payout_out(row: Payout) -> PayoutOut:
    return PayoutOut(
        payout_id=row.id,
        merchant_id=row.merchant_id,
        period=row.period,
        covers_from=row.covers_from,
        through=row.through,
        amount_fen=row.amount_fen,
        paid_at=row.created_at,
        paid_by=row.created_by,
        reference=row.reference,
    )


async def payouts_of(session: AsyncSession, merchant_id: int) -> list[Payout]:
    """The merchant's payouts, oldest period first (one a month or a day: a short list)."""
    return list(
        (
            await session.scalars(
                select(Payout).where(Payout.merchant_id == merchant_id).order_by(Payout.through)
            )
        ).all()
    )


def _totals(lines: Sequence[StatementLine]) -> list[StatementLine]:
    order = {source.kind: n for n, source in enumerate(SOURCES)}
    summed: dict[str, StatementLine] = {}
    for line in lines:
        was = summed.get(line.kind)
        summed[line.kind] = _add(was, line) if was is not None else line
    summed = {kind: line.model_copy(update={"date": None}) for kind, line in summed.items()}
    return sorted(summed.values(), key=lambda x: order.get(x.kind, len(order)))


async def statement(
    ctx: Ctx, merchant_id: int, first: dt.date, last: dt.date, label: str | None = None
) -> StatementOut:
    """The statement of ``merchant_id`` for local days ``first``..``last`` (fen throughout).

    The balance carried in is summed from the last payout that ends on or before ``first``
    (which left nothing due up to its end), so a statement reads at most the months since the
    merchant was last paid. Raises ``MerchantNotFound`` and ``InvalidRequest`` (the span).
    """
    check_span(first, last)
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    bounds = [ctx.day_bounds(d)[0] for d in days] + [ctx.day_bounds(last)[1]]
    start, end = bounds[0], bounds[-1]
    now = ctx.now()
    async with ctx.db.read() as session:
        merchant = await merchants.load(session, merchant_id)
        paid = await payouts_of(session, merchant_id)
        before = [p for p in paid if p.through <= start]
        checkpoint = before[-1].through if before else EPOCH
        opening = await due_between(session, merchant_id, checkpoint, start)
        found = await sum_lines(session, merchant_id, bounds)
    order = {source.kind: n for n, source in enumerate(SOURCES)}
    lines = [
        line.model_copy(update={"date": days[index]})
        for (index, _kind), line in sorted(found.items(), key=lambda x: (x[0][0], order[x[0][1]]))
    ]
    inside = [p for p in paid if start < p.through <= end]
    paid_fen = sum(p.amount_fen for p in inside)
    credit = sum(line.credit_fen for line in lines)
    debit = sum(line.debit_fen for line in lines)
    closing = opening + credit - debit - paid_fen
    settled = next((p for p in paid if p.through >= end), None)
    status: StatementStatus
    if end > now:
        status = "open"
    elif settled is not None:
        status = "paid"
    elif closing == 0:
        status = "nothing_due"
    else:
        status = "unpaid"
    return StatementOut(
        merchant_id=merchant_id,
        merchant_name=merchant.name,
        period=label or period_label(first, last),
        from_date=first,
        to_date=last,
        opening_due_fen=opening,
        lines=lines,
        totals=_totals(lines),
        credit_fen=credit,
        debit_fen=debit,
        net_fen=credit - debit,
        paid_fen=paid_fen,
        closing_due_fen=closing,
        status=status,
        payouts=[payout_out(p) for p in inside],
        paid_by=payout_out(settled) if settled is not None else None,
        as_of=now,
    )


# --- CSV --------------------------------------------------------------------------------------


def yuan(fen: int) -> str:
    """Exact yuan text of integer fen (``-1234`` -> ``-12.34``): spreadsheets read it as a
    number, and no float ever touches the amount."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


CSV_HEADER = (
    "date",
    "kind",
    "count",
    "amount_yuan",
    "points",
    "owed_to_merchant_yuan",
    "owed_by_merchant_yuan",
    "net_yuan",
)


def to_csv(s: StatementOut) -> str:
    """The statement as CSV text for a merchant's office: one row per day and kind, then the
    totals, the carried balance, payouts and what is due. Written with a BOM by the callers
    that save it to a file, as Chinese Excel needs to read UTF-8 (ledger/csv_text.py)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["merchant", s.merchant_id, s.merchant_name, "period", s.period,
                s.from_date.isoformat(), s.to_date.isoformat(), "status", s.status])
    w.writerow(CSV_HEADER)
    w.writerow(["", "opening_due", "", "", "", "", "", yuan(s.opening_due_fen)])
    for line in [*s.lines, *s.totals]:
        w.writerow(
            [
                line.date.isoformat() if line.date else "total",
                line.kind,
                line.count,
                yuan(line.amount_fen),
                line.points,
                yuan(line.credit_fen),
                yuan(line.debit_fen),
                yuan(line.credit_fen - line.debit_fen),
            ]
        )
    for p in s.payouts:
        w.writerow([p.period, f"payout:{p.payout_id}", 1, "", "", "", "", yuan(-p.amount_fen)])
    w.writerow(["", "closing_due", "", "", "", yuan(s.credit_fen), yuan(s.debit_fen),
                yuan(s.closing_due_fen)])
    if s.paid_by is not None:
        w.writerow(["", "paid_by", s.paid_by.payout_id, yuan(s.paid_by.amount_fen), "", "", "",
                    s.paid_by.reference])
    return out.getvalue()


def to_text(s: StatementOut) -> str:
    """The statement as plain text for a terminal (yuan; the CSV and JSON carry the same)."""
    rows = [
        f"Statement of {s.merchant_name} (#{s.merchant_id}) for {s.period} "
        f"({s.from_date.isoformat()}..{s.to_date.isoformat()}): {s.status}",
        f"{'carried forward':<32}{yuan(s.opening_due_fen):>14}",
    ]
    for line in s.lines:
        rows.append(
            f"{line.date.isoformat() if line.date else '':<11}{line.kind:<19}{line.count:>6}"
            f"{yuan(line.credit_fen - line.debit_fen):>14}"
        )
    for line in s.totals:
        rows.append(
            f"{'total':<11}{line.kind:<19}{line.count:>6}{yuan(line.credit_fen):>14}"
            f"{yuan(-line.debit_fen):>14}"
        )
    for p in s.payouts:
        rows.append(f"{'payout ' + str(p.payout_id):<32}{yuan(-p.amount_fen):>14}  {p.reference}")
    rows.append(f"{'due (+ to the merchant)':<32}{yuan(s.closing_due_fen):>14}")
    if s.paid_by is not None:
        rows.append(
            f"paid by payout {s.paid_by.payout_id} ({s.paid_by.period}) on "
            f"{s.paid_by.paid_at:%Y-%m-%d}: {yuan(s.paid_by.amount_fen)} {s.paid_by.reference}"
        )
    return "\n".join(rows) + "\n"
