"""A merchant's stores (门店; issue 11, DESIGN.md "Merchants and their money", Roles).

A chain is one merchant (one set of terms, one settlement) with several stores, each with its own
name, address, place and hours. The nearby search lists stores; a cashier works at one; purchases
and redemptions record the store they were made at, so ``/today`` can be told per store.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import geo, merchants
from ledger.context import Ctx
from ledger.errors import InvalidRequest, StoreNotFound
from ledger.models import MerchantIn, StoreIn, StoreListOut, StoreOut
from ledger.schema import Merchant, Store

E6 = merchants.E6


def row_values(
    merchant_id: int, category: str, store: StoreIn | MerchantIn, now: object
) -> dict[str, Any]:
    """A ``stores`` row: from a ``StoreIn``, or a merchant's own place (its first store)."""
    return {
        "merchant_id": merchant_id,
        "name": store.name,
        "category": category,
        "address": store.address,
        "lat_e6": round(store.lat * E6),
        "lon_e6": round(store.lon * E6),
        "cell": geo.cell_of(store.lat, store.lon),
        "hours": store.hours,
        "active": True,
        "created_at": now,
    }


def place_values(store: StoreIn | MerchantIn) -> dict[str, Any]:
    """What an import updates in a store it finds again: address, place and hours."""
    return {
        "address": store.address,
        "lat_e6": round(store.lat * E6),
        "lon_e6": round(store.lon * E6),
        "cell": geo.cell_of(store.lat, store.lon),
        "hours": store.hours,
        "active": True,
    }


def to_out(row: Store, merchant_name: str) -> StoreOut:
    return StoreOut(
        id=row.id,
        merchant_id=row.merchant_id,
        merchant_name=merchant_name,
        name=row.name,
        address=row.address,
        lat=row.lat_e6 / E6,
        lon=row.lon_e6 / E6,
        hours=row.hours,
    )


async def add(ctx: Ctx, merchant_id: int, store: StoreIn) -> StoreOut:
    """Add a store to an active merchant.

    Raises ``MerchantNotFound``, and ``InvalidRequest`` when the merchant already has a store of
    that name (a store is known by its name within its merchant).
    """
    try:
        async with ctx.db.write() as session:
            merchant = await merchants.load(session, merchant_id)
            store_id = await session.scalar(
                insert(Store)
                .values(**row_values(merchant.id, merchant.category, store, ctx.now()))
                .returning(Store.id)
            )
            assert store_id is not None
            row = await session.get_one(Store, store_id)
            return to_out(row, merchant.name)
    except IntegrityError:
        raise InvalidRequest(
            "the merchant already has a store of that name", name=store.name
        ) from None


async def list_for(ctx: Ctx, merchant_id: int) -> StoreListOut:
    """The merchant's active stores, oldest first (the first is the merchant's own place)."""
    async with ctx.db.read() as session:
        merchant = await merchants.load(session, merchant_id)
        rows = (
            await session.scalars(
                select(Store)
                .where(Store.merchant_id == merchant_id, Store.active.is_(True))
                .order_by(Store.id)
            )
        ).all()
    return StoreListOut(
        merchant_id=merchant_id, stores=[to_out(r, merchant.name) for r in rows]
    )


async def get(ctx: Ctx, store_id: int) -> StoreOut:
    """One active store of an active merchant, as the nearby list's map shows it.
    Raises ``StoreNotFound``."""
    async with ctx.db.read() as session:
        found = (
            await session.execute(
                select(Store, Merchant.name)
                .join(Merchant, Merchant.id == Store.merchant_id)
                .where(Store.id == store_id, Store.active.is_(True), Merchant.active.is_(True))
            )
        ).first()
    if found is None:
        raise StoreNotFound("no such store", store_id=store_id)
    return to_out(found[0], found[1])


async def check_belongs(session: AsyncSession, merchant_id: int, store_id: int) -> None:
    """Raises ``StoreNotFound`` unless ``store_id`` is an active store of ``merchant_id``."""
    found = await session.scalar(
        select(func.count())
        .select_from(Store)
        .where(Store.id == store_id, Store.merchant_id == merchant_id, Store.active.is_(True))
    )
    if not found:
        raise StoreNotFound("no such store of this merchant", store_id=store_id)


async def move_first_store(session: AsyncSession, merchant_id: int, merchant: MerchantIn) -> None:
    """An import that moves a merchant moves its first store (the merchant's own place) too,
    and renames it with the merchant when it bore the merchant's name. Call it before the
    merchant's own row is updated (it reads the old name)."""
    first = select(func.min(Store.id)).where(Store.merchant_id == merchant_id).scalar_subquery()
    old_name = select(Merchant.name).where(Merchant.id == merchant_id).scalar_subquery()
    await session.execute(update(Store).where(Store.id == first).values(**place_values(merchant)))
    await session.execute(
        update(Store).where(Store.id == first, Store.name == old_name).values(name=merchant.name)
    )
