"""Import the merchant directory, and merchants' stores (门店), from CSV.

Columns (header row required; order free): ``name, category, lat, lon`` and optionally
``external_ref, address, hours, concession_rate, voucher_cap`` — rates in percent ("8", "8%",
"7.5"). A row with an ``external_ref`` already in the directory updates that merchant (and its
first store, the merchant's own place). A new merchant gets its first store at its own place.

A row with a ``merchant_ref`` is a store of the merchant whose ``external_ref`` that is (in the
directory, or on an earlier line of the file): ``name`` is the store's name, with its ``address,
lat, lon, hours``; its other columns are not read. A store whose merchant already has a store of
that name is updated, so importing the same file again changes nothing.

A bad row is reported with its line number and skipped; the rest are imported in batches.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import geo, stores
from ledger.context import Ctx
from ledger.merchants import E6, create_many
from ledger.models import ImportReport, MerchantIn, StoreIn
from ledger.schema import Merchant, Store

BATCH = 1000
M = TypeVar("M", bound=BaseModel)
REQUIRED = {"name", "lat", "lon"}
MERCHANT_ROWS = {"category"}  # needed too, unless every row is a store (``merchant_ref``)


@dataclass(frozen=True)
class StoreRow:
    line: int
    merchant_ref: str
    store: StoreIn


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


def _getter(row: dict[str, str]) -> Callable[[str], str]:
    return lambda name: (row.get(name) or "").strip()


def _validated(model: type[M], get: Callable[[str], str], fields: dict[str, Any]) -> M:
    """``model`` from a row's place (``lat``, ``lon``) and ``fields``; ValueError naming the
    first thing wrong."""
    try:
        lat, lon = float(get("lat")), float(get("lon"))
    except ValueError:
        raise ValueError("lat and lon must be numbers") from None
    try:
        return model.model_validate({**fields, "lat": lat, "lon": lon})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"{field}: {first['msg']}") from None


def parse_row(row: dict[str, str], default_concession: int, default_cap: int) -> MerchantIn:
    get = _getter(row)
    return _validated(
        MerchantIn,
        get,
        {
            "name": get("name"),
            "category": get("category").lower(),
            "address": get("address"),
            "hours": get("hours"),
            "concession_bp": _percent_bp(get("concession_rate"), default_concession),
            "voucher_cap_bp": _percent_bp(get("voucher_cap"), default_cap),
            "external_ref": get("external_ref") or None,
        },
    )


def parse_store(row: dict[str, str]) -> StoreIn:
    """A store row's ``name, address, lat, lon, hours``."""
    get = _getter(row)
    fields = {"name": get("name"), "address": get("address"), "hours": get("hours")}
    return _validated(StoreIn, get, fields)


def read_rows(text: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows with their line numbers; a header with tabs and no commas (Excel's "Unicode text")
    is read tab-separated."""
    lines = iter(text)
    first = next(lines, "")
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.DictReader(itertools.chain([first], lines), delimiter=delimiter)
    header = set(reader.fieldnames or [])
    missing = REQUIRED - header
    if "merchant_ref" not in header:
        missing |= MERCHANT_ROWS - header
    if missing:
        raise ValueError(f"the header lacks {', '.join(sorted(missing))}")
    for row in reader:
        yield reader.line_num, row


async def _flush(
    ctx: Ctx, batch: list[MerchantIn], store_rows: list[StoreRow]
) -> list[tuple[int, str]]:
    """Write a batch of merchants, then of stores (whose merchants may be in the batch);
    answers the store rows skipped, with their line numbers."""
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
                merchant_id = await session.scalar(
                    select(Merchant.id).where(Merchant.external_ref == m.external_ref)
                )
                assert merchant_id is not None
                await stores.move_first_store(session, merchant_id, m)
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
        return await _flush_stores(session, store_rows, ctx.now())


async def _flush_stores(
    session: AsyncSession, rows: list[StoreRow], now: object
) -> list[tuple[int, str]]:
    if not rows:
        return []
    wanted = {r.merchant_ref for r in rows}
    found = await session.execute(
        select(Merchant.external_ref, Merchant.id, Merchant.category).where(
            Merchant.external_ref.in_(wanted)
        )
    )
    merchants = {str(ref): (int(mid), str(cat)) for ref, mid, cat in found}
    skipped: list[tuple[int, str]] = []
    for row in rows:
        if row.merchant_ref not in merchants:
            skipped.append(
                (row.line, f"no merchant with external_ref {row.merchant_ref!r} in the directory "
                 "or on an earlier line")
            )
            continue
        merchant_id, category = merchants[row.merchant_ref]
        moved = await session.execute(
            update(Store)
            .where(Store.merchant_id == merchant_id, Store.name == row.store.name)
            .values(**stores.place_values(row.store))
        )
        if not getattr(moved, "rowcount", 0):
            await session.execute(
                insert(Store).values(**stores.row_values(merchant_id, category, row.store, now))
            )
    return skipped


async def import_csv(
    ctx: Ctx, lines: Iterable[str], progress: Callable[[int], object] | None = None
) -> ImportReport:
    """Import from text lines (``newline=""``; ledger/csv_text.py decodes a file's bytes),
    one batch at a time."""
    imported, stores_imported, skipped = 0, 0, []
    batch: list[MerchantIn] = []
    store_rows: list[StoreRow] = []
    seen_refs: set[str] = set()
    for line, row in read_rows(lines):
        merchant_ref = (row.get("merchant_ref") or "").strip()
        if merchant_ref:
            try:
                store_rows.append(StoreRow(line, merchant_ref, parse_store(row)))
            except ValueError as exc:
                skipped.append((line, str(exc)))
            if progress:
                progress(1)
            continue
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
        if len(batch) + len(store_rows) >= BATCH:
            refused = await _flush(ctx, batch, store_rows)
            imported += len(batch)
            stores_imported += len(store_rows) - len(refused)
            skipped += refused
            batch, store_rows = [], []
    if batch or store_rows:
        refused = await _flush(ctx, batch, store_rows)
        imported += len(batch)
        stores_imported += len(store_rows) - len(refused)
        skipped += refused
    skipped.sort()
    return ImportReport(imported=imported, skipped=skipped, stores=stores_imported)
