"""The alliance's merchant directory and the nearby search."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    ScalarSelect,
    String,
    Subquery,
    bindparam,
    column,
    func,
    insert,
    or_,
    select,
    union_all,
    values,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import Executable

from ledger import geo
from ledger.context import Ctx
from ledger.db import Conn, Row, Statement
from ledger.errors import InvalidRequest, MerchantNotFound
from ledger.models import MerchantIn, MerchantOut, NearbyMerchant, NearbyOut
from ledger.schema import Merchant, Store

E6 = 1_000_000


def to_out(m: Merchant) -> MerchantOut:
    return MerchantOut(
        id=m.id,
        name=m.name,
        category=m.category,
        address=m.address,
        lat=m.lat_e6 / E6,
        lon=m.lon_e6 / E6,
        hours=m.hours,
        concession_bp=m.concession_bp,
        voucher_cap_bp=m.voucher_cap_bp,
        external_ref=m.external_ref,
    )


def row_values(m: MerchantIn, now: object) -> dict[str, object]:
    return {
        "external_ref": m.external_ref,
        "name": m.name,
        "category": m.category,
        "address": m.address,
        "lat_e6": round(m.lat * E6),
        "lon_e6": round(m.lon * E6),
        "cell": geo.cell_of(m.lat, m.lon),
        "hours": m.hours,
        "concession_bp": m.concession_bp,
        "voucher_cap_bp": m.voucher_cap_bp,
        "active": True,
        "created_at": now,
    }


async def create(ctx: Ctx, merchant: MerchantIn) -> MerchantOut:
    """A new merchant and its first store, at the merchant's own place with its hours."""
    async with ctx.db.write() as session:
        merchant_id = await session.scalar(
            insert(Merchant).values(**row_values(merchant, ctx.now())).returning(Merchant.id)
        )
        assert merchant_id is not None
        await first_stores(session, [merchant_id])
        row = await session.get_one(Merchant, merchant_id)
    return to_out(row)


async def create_many(session: AsyncSession, merchants: list[MerchantIn], now: object) -> None:
    """New merchants, each with its first store (as ``create``)."""
    if merchants:
        created = await session.scalars(
            insert(Merchant).returning(Merchant.id, sort_by_parameter_order=True),
            [row_values(m, now) for m in merchants],
        )
        await first_stores(session, list(created.all()))


async def first_stores(session: AsyncSession, merchant_ids: list[int]) -> None:
    """Give each of ``merchant_ids`` (just created) its first store: its own name and place."""
    if not merchant_ids:
        return
    m = Merchant
    await session.execute(
        insert(Store).from_select(
            [
                "merchant_id", "name", "category", "address", "lat_e6", "lon_e6", "cell",
                "hours", "active", "created_at",
            ],
            select(
                m.id, m.name, m.category, m.address, m.lat_e6, m.lon_e6, m.cell, m.hours,
                m.active, m.created_at,
            )
            .where(m.id.in_(merchant_ids))
            .order_by(m.id),
        )
    )


async def load(session: AsyncSession, merchant_id: int) -> Merchant:
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None or not merchant.active:
        raise MerchantNotFound("no such merchant", merchant_id=merchant_id)
    return merchant


@dataclass(frozen=True)
class Terms:
    """What a purchase needs to know about its (active) merchant."""

    id: int
    name: str
    concession_bp: int
    voucher_cap_bp: int


_merchants = Merchant.metadata.tables[Merchant.__tablename__]
_stores = Store.metadata.tables[Store.__tablename__]
_TERMS_WHERE = (_merchants.c.id == bindparam("merchant_id"), _merchants.c.active.is_(True))


def terms_subqueries() -> tuple[ScalarSelect[Any], ...]:
    """An active merchant's terms as scalar subqueries of the parameter ``merchant_id``.

    Like ``load`` for the hot path: three columns, no ORM object, and no statement of their
    own — they ride along the statement that needs them (a purchase's idempotency claim).
    """
    return tuple(
        select(column).where(*_TERMS_WHERE).scalar_subquery()
        for column in (_merchants.c.name, _merchants.c.concession_bp, _merchants.c.voucher_cap_bp)
    )


def terms_from(merchant_id: int, values: Sequence[Any]) -> Terms:
    """The terms read by ``terms_subqueries``; ``MerchantNotFound`` when they found nothing."""
    name, concession_bp, voucher_cap_bp = values
    if name is None:
        raise MerchantNotFound("no such merchant", merchant_id=merchant_id)
    return Terms(merchant_id, str(name), int(concession_bp), int(voucher_cap_bp))


async def get(ctx: Ctx, merchant_id: int) -> MerchantOut:
    async with ctx.db.read() as session:
        return to_out(await load(session, merchant_id))


async def nearby(
    ctx: Ctx,
    lat: float,
    lon: float,
    radius_m: int | None = None,
    category: str | None = None,
    limit: int = 10,
    offset: int = 0,
) -> NearbyOut:
    """Stores within ``radius_m`` by true distance, nearest first, and the categories there.

    Each found store is one entry (a chain's stores are listed apart, each with its merchant's
    name and terms and its own name, address, place and hours); ``total`` counts stores.
    Raises ``InvalidRequest`` for coordinates, radius, limit or offset out of range.
    """
    radius = radius_m or ctx.rules.nearby_default_radius_m
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidRequest("coordinates out of range", lat=lat, lon=lon)
    if not 1 <= radius <= ctx.rules.nearby_max_radius_m:
        raise InvalidRequest("radius out of range", max=ctx.rules.nearby_max_radius_m)
    if not (1 <= limit <= 50 and 0 <= offset <= 10_000):
        raise InvalidRequest("limit must be 1-50 and offset 0-10000")
    search, where = _area(lat, lon, radius)
    # Only the rim can hold the band: what lies deeper is surely inside, and counted as such.
    rim, rim_where = _area(lat, lon, radius, rim=2 * geo.disc(lat, lon, radius).margin_m)

    def distance(lat_e6: int, lon_e6: int) -> float:
        return geo.haversine_m(lat, lon, lat_e6 / E6, lon_e6 / E6)

    async def read(conn: Conn) -> NearbyOut:
        categories = {str(c): int(n) for c, n in await search.counts.rows(conn, **where)}
        for c, lat_e6, lon_e6 in await rim.band.rows(conn, **rim_where):
            if distance(lat_e6, lon_e6) <= radius:
                categories[c] = categories.get(c, 0) + 1
        total = categories.get(category, 0) if category else sum(categories.values())
        wanted = min(offset + limit, total)
        # The page is the nearest few: look for them in a smaller circle that should hold
        # about four times as many, widening it until it holds enough (or is the whole circle).
        reach = max(50.0, radius * math.sqrt(4 * wanted / total)) if wanted else radius
        found: list[tuple[float, Row]] = []
        while wanted:
            reach = min(reach, radius)
            near, near_where = _area(lat, lon, reach)
            rows = await near.near.rows(conn, **near_where, category=category)
            found = [(d, r) for r in rows if (d := distance(r[3], r[4])) <= reach]
            if len(found) >= wanted or reach >= radius:
                break  # anything not found lies beyond ``reach``: farther than the page
            reach *= 2
        found.sort(key=lambda t: (t[0], t[1][6]))
        shown = found[offset : offset + limit]
        # The merchants' names and terms for the page alone: one statement, by primary key.
        ids = [r[0] for _d, r in shown][:_PAGE_MAX]
        params = {f"m{n}": ids[n] if n < len(ids) else 0 for n in range(_PAGE_MAX)}
        terms = {int(t[0]): t for t in await _PAGE_TERMS.rows(conn, **params)} if shown else {}
        page = [
            NearbyMerchant(
                id=r[0],
                name=terms[r[0]][1],
                category=r[1],
                address=r[2],
                lat=r[3] / E6,
                lon=r[4] / E6,
                hours=r[5],
                concession_bp=terms[r[0]][2],
                voucher_cap_bp=terms[r[0]][3],
                external_ref=terms[r[0]][4],
                distance_m=round(d),
                store_id=r[6],
                store_name=r[7],
            )
            for d, r in shown
            if r[0] in terms
        ]
        return NearbyOut(merchants=page, total=total, radius_m=radius, categories=categories)

    return await ctx.db.run_direct(read, readonly=True)


@dataclass(frozen=True)
class _Search:
    counts: Statement  # category, how many surely inside
    band: Statement  # category and place of each that only the true distance can place
    near: Statement  # in full, every one that may be inside (of ``category``, if given)


_SEARCHES: dict[int, _Search] = {}


def _area(
    lat: float, lon: float, radius: float, rim: float | None = None
) -> tuple[_Search, dict[str, Any]]:
    """The statements and parameters that search the circle of ``radius`` around a place (only
    its outer ``rim`` metres, if given)."""
    if rim is None:
        ranges = geo.cell_ranges(lat, lon, radius)
    else:
        ranges = geo.rim_ranges(lat, lon, radius, rim)
    circle = geo.disc(lat, lon, radius)
    where: dict[str, Any] = {
        "lat0": circle.lat_e6,
        "lon0": circle.lon_e6,
        "kx": circle.kx,
        "inner2": circle.inner2,
        "outer2": circle.outer2,
    }
    for n, (lo, hi) in enumerate(ranges):
        where[f"lo{n}"], where[f"hi{n}"] = lo, hi
    return _search(len(ranges)), where


def _search(ranges: int) -> _Search:
    """The three statements of a search over ``ranges`` key ranges (one per row of cells)."""
    found = _SEARCHES.get(ranges)
    if found is not None:
        return found
    m = _stores
    dy = m.c.lat_e6 - bindparam("lat0", type_=Float)
    dx = m.c.lon_e6 - bindparam("lon0", type_=Float)
    d2 = dy * dy + dx * dx * bindparam("kx", type_=Float)
    inner2, outer2 = bindparam("inner2", type_=Float), bindparam("outer2", type_=Float)
    live = m.c.active.is_(True)
    wanted = bindparam("category", type_=String)

    def counts(dialect: str) -> Executable:
        inside = _in_ranges(dialect, ranges, (m.c.category,), live, d2 <= inner2)
        return select(inside.c.category, func.count()).group_by(inside.c.category)

    def band(dialect: str) -> Executable:
        return select(
            _in_ranges(
                dialect,
                ranges,
                (m.c.category, m.c.lat_e6, m.c.lon_e6),
                live,
                d2 > inner2,
                d2 <= outer2,
            )
        )

    def near(dialect: str) -> Executable:
        category = or_(wanted.is_(None), m.c.category == wanted)
        return select(_in_ranges(dialect, ranges, _SHOWN, live, d2 <= outer2, category))

    found = _SEARCHES[ranges] = _Search(Statement(counts), Statement(band), Statement(near))
    return found


def _in_ranges(
    dialect: str, ranges: int, columns: Sequence[Any], *where: ColumnElement[bool]
) -> Subquery:
    """``columns`` of the stores in key ranges ``lo<n>``..``hi<n>`` that match ``where``.

    SQLite seeks the index once per row of a table of ranges; PostgreSQL's planner cannot see how
    few rows such a join finds and scans the table, so there it is one index scan per range,
    glued by UNION ALL.
    """
    s = stores = _stores
    bounds = [
        (bindparam(f"lo{n}", type_=BigInteger), bindparam(f"hi{n}", type_=BigInteger))
        for n in range(ranges)
    ]
    if dialect == "postgresql":
        return union_all(
            *(
                select(*columns).select_from(stores).where(s.c.cell.between(lo, hi), *where)
                for lo, hi in bounds
            )
        ).subquery("found")
    cells = values(column("lo", BigInteger), column("hi", BigInteger), name="cells")
    table = cells.data(bounds).cte("cells")
    source = table.join(stores, s.c.cell.between(table.c.lo, table.c.hi))
    return select(*columns).select_from(source).where(*where).subquery("found")


# A found store as the page needs it; the positions are read in ``nearby``.
_SHOWN = (
    _stores.c.merchant_id,
    _stores.c.category,
    _stores.c.address,
    _stores.c.lat_e6,
    _stores.c.lon_e6,
    _stores.c.hours,
    _stores.c.id,
    _stores.c.name,
)
_PAGE_MAX = 50  # the largest page ``nearby`` allows
# The names and terms of the page's merchants (unused ids are 0, which no merchant has).
_PAGE_TERMS = Statement(
    select(
        _merchants.c.id,
        _merchants.c.name,
        _merchants.c.concession_bp,
        _merchants.c.voucher_cap_bp,
        _merchants.c.external_ref,
    ).where(
        _merchants.c.id.in_([bindparam(f"m{n}", type_=BigInteger) for n in range(_PAGE_MAX)]),
        _merchants.c.active.is_(True),
    )
)
