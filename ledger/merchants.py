"""The alliance's merchant directory and the nearby search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ScalarSelect, and_, bindparam, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import geo
from ledger.context import Ctx
from ledger.errors import InvalidRequest, MerchantNotFound
from ledger.models import MerchantIn, MerchantOut, NearbyMerchant, NearbyOut
from ledger.schema import Merchant

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
    async with ctx.db.write() as session:
        merchant_id = await session.scalar(
            insert(Merchant).values(**row_values(merchant, ctx.now())).returning(Merchant.id)
        )
        assert merchant_id is not None
        row = await session.get_one(Merchant, merchant_id)
    return to_out(row)


async def create_many(session: AsyncSession, merchants: list[MerchantIn], now: object) -> None:
    if merchants:
        await session.execute(insert(Merchant), [row_values(m, now) for m in merchants])


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
    """Merchants within ``radius_m`` by true distance, nearest first, and the categories there."""
    radius = radius_m or ctx.rules.nearby_default_radius_m
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidRequest("coordinates out of range", lat=lat, lon=lon)
    if not 1 <= radius <= ctx.rules.nearby_max_radius_m:
        raise InvalidRequest("radius out of range", max=ctx.rules.nearby_max_radius_m)
    if not (1 <= limit <= 50 and 0 <= offset <= 10_000):
        raise InvalidRequest("limit must be 1-50 and offset 0-10000")
    ranges = geo.cell_ranges(lat, lon, radius)
    cols = (
        Merchant.id,
        Merchant.name,
        Merchant.category,
        Merchant.address,
        Merchant.lat_e6,
        Merchant.lon_e6,
        Merchant.hours,
        Merchant.concession_bp,
        Merchant.voucher_cap_bp,
        Merchant.external_ref,
    )
    query = select(*cols).where(
        or_(*(and_(Merchant.cell >= lo, Merchant.cell <= hi) for lo, hi in ranges)),
        Merchant.active.is_(True),
    )
    async with ctx.db.read() as session:
        rows = (await session.execute(query)).all()
    found: list[tuple[float, int, Any]] = []
    categories: dict[str, int] = {}
    for row in rows:
        d = geo.haversine_m(lat, lon, row.lat_e6 / E6, row.lon_e6 / E6)
        if d > radius:
            continue
        categories[row.category] = categories.get(row.category, 0) + 1
        if category is None or row.category == category:
            found.append((d, row.id, row))
    found.sort(key=lambda t: (t[0], t[1]))
    page = [
        NearbyMerchant(
            id=r.id,
            name=r.name,
            category=r.category,
            address=r.address,
            lat=r.lat_e6 / E6,
            lon=r.lon_e6 / E6,
            hours=r.hours,
            concession_bp=r.concession_bp,
            voucher_cap_bp=r.voucher_cap_bp,
            external_ref=r.external_ref,
            distance_m=round(d),
        )
        for d, _id, r in found[offset : offset + limit]
    ]
    return NearbyOut(merchants=page, total=len(found), radius_m=radius, categories=categories)
