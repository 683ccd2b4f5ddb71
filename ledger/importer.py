"""Import the merchant directory from CSV.

Columns (header row required; order free): ``name, category, lat, lon`` and optionally
``external_ref, address, hours, concession_rate, voucher_cap`` — rates in percent ("8", "8%",
"7.5"). A row with an ``external_ref`` already in the directory updates that merchant. A bad row is
reported with its line number and skipped; the rest are imported in batches.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError
from sqlalchemy import select, update

from ledger import geo
from ledger.context import Ctx
from ledger.merchants import E6, create_many
from ledger.models import ImportReport, MerchantIn
from ledger.schema import Merchant

BATCH = 1000
REQUIRED = {"name", "category", "lat", "lon"}


def _percent_bp(raw: str, default: int) -> int:
    text = raw.strip().rstrip("%").strip()
    if not text:
        return default
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a percentage: {raw!r}") from None
    bp = value * 100
    if bp != bp.to_integral_value():
        raise ValueError(f"at most two decimals in a percentage: {raw!r}")
    return int(bp)


def parse_row(row: dict[str, str], default_concession: int, default_cap: int) -> MerchantIn:
    def get(name: str) -> str:
        return (row.get(name) or "").strip()

    try:
        lat, lon = float(get("lat")), float(get("lon"))
    except ValueError:
        raise ValueError("lat and lon must be numbers") from None
    try:
        return MerchantIn.model_validate(
            {
                "name": get("name"),
                "category": get("category").lower(),
                "address": get("address"),
                "lat": lat,
                "lon": lon,
                "hours": get("hours"),
                "concession_bp": _percent_bp(get("concession_rate"), default_concession),
                "voucher_cap_bp": _percent_bp(get("voucher_cap"), default_cap),
                "external_ref": get("external_ref") or None,
            }
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"{field}: {first['msg']}") from None


def read_rows(text: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows with their line numbers; a header with tabs and no commas (Excel's "Unicode text")
    is read tab-separated."""
    lines = iter(text)
    first = next(lines, "")
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.DictReader(itertools.chain([first], lines), delimiter=delimiter)
    missing = REQUIRED - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"the header lacks {', '.join(sorted(missing))}")
    for row in reader:
        yield reader.line_num, row


async def _flush(ctx: Ctx, batch: list[MerchantIn]) -> None:
    refs = [m.external_ref for m in batch if m.external_ref]
    async with ctx.db.write() as session:
        existing = set()
        if refs:
            existing = set(
                (
                    await session.scalars(
                        select(Merchant.external_ref).where(Merchant.external_ref.in_(refs))
                    )
                ).all()
            )
        for m in batch:
            if m.external_ref in existing:
                await session.execute(
                    update(Merchant)
                    .where(Merchant.external_ref == m.external_ref)
                    .values(
                        name=m.name,
                        category=m.category,
                        address=m.address,
                        lat_e6=round(m.lat * E6),
                        lon_e6=round(m.lon * E6),
                        cell=geo.cell_of(m.lat, m.lon),
                        hours=m.hours,
                        concession_bp=m.concession_bp,
                        voucher_cap_bp=m.voucher_cap_bp,
                        active=True,
                    )
                )
        fresh = [m for m in batch if m.external_ref not in existing]
        await create_many(session, fresh, ctx.now())


async def import_csv(
    ctx: Ctx, lines: Iterable[str], progress: Callable[[int], object] | None = None
) -> ImportReport:
    """Import from text lines (``newline=""``; ledger/csv_text.py decodes a file's bytes),
    one batch at a time."""
    imported, skipped = 0, []
    batch: list[MerchantIn] = []
    seen_refs: set[str] = set()
    for line, row in read_rows(lines):
        try:
            merchant = parse_row(
                row, ctx.rules.default_concession_bp, ctx.rules.default_voucher_cap_bp
            )
            if merchant.external_ref:
                if merchant.external_ref in seen_refs:
                    raise ValueError(f"external_ref {merchant.external_ref!r} repeats in this file")
                seen_refs.add(merchant.external_ref)
        except ValueError as exc:
            skipped.append((line, str(exc)))
        else:
            batch.append(merchant)
        if progress:
            progress(1)
        if len(batch) >= BATCH:
            await _flush(ctx, batch)
            imported += len(batch)
            batch = []
    if batch:
        await _flush(ctx, batch)
        imported += len(batch)
    return ImportReport(imported=imported, skipped=skipped)
