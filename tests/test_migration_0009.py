"""Migration 0009_stores on a ledger built by 0006_exit_cap with merchants: each merchant becomes
one store with its name, address, place and hours; its purchases, redemptions and cashiers belong
to that store, its owners stay merchant-wide; nearby search finds the stores at once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, select, text

from ledger import geo
from ledger.db import Database
from ledger.migrate import alembic_config, upgrade
from ledger.principal import SYSTEM
from ledger.schema import Purchase, Redemption, Staff, StaffInvite, Store
from ledger.service import LedgerService
from tests.conftest import DATABASES
from tests.databases import fresh_database

AT = dt.datetime(2026, 11, 1, 8, 0)
SHOPS = [  # name, category, address, lat, lon, hours
    ("绿源水果店", "fruit", "钱王街1号", 30.2350, 119.7250, "08:00-21:00"),
    ("青山咖啡", "cafe", "", 30.2360, 119.7260, ""),
]


def _to_0006_with_merchants(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "0006_exit_cap")
    for name, category, address, lat, lon, hours in SHOPS:
        connection.execute(
            text(
                "INSERT INTO merchants (name, category, address, lat_e6, lon_e6, cell, hours,"
                " concession_bp, voucher_cap_bp, active, created_at)"
                " VALUES (:n, :c, :a, :lat, :lon, :cell, :h, 1000, 2000, true, :at)"
            ),
            {"n": name, "c": category, "a": address, "lat": round(lat * 1e6),
             "lon": round(lon * 1e6), "cell": geo.cell_of(lat, lon), "h": hours, "at": AT},
        )
    connection.execute(
        text(
            "INSERT INTO members (locale, points, vouchers_fen, created_at, last_active_at)"
            " VALUES ('zh_Hans', 0, 0, :at, :at)"
        ),
        {"at": AT},
    )
    for merchant in (1, 2, 2):
        connection.execute(
            text(
                "INSERT INTO purchases (merchant_id, member_id, amount_fen, concession_fen,"
                " member_points, merchant_points, price_pool_fen, price_points, green_tags,"
                " created_at) VALUES (:m, 1, 1000, 100, 0, 0, 0, 0, '[]', :at)"
            ),
            {"m": merchant, "at": AT},
        )
    connection.execute(
        text(
            "INSERT INTO redemption_codes (member_id, code_hash, state, created_at, expires_at,"
            " used_at) VALUES (1, 'h1', 'used', :at, :at, :at)"
        ),
        {"at": AT},
    )
    connection.execute(
        text(
            "INSERT INTO redemptions (code_id, merchant_id, member_id, bill_fen,"
            " vouchers_applied_fen, paid_fen, points_earned, purchase_id, staff, created_at)"
            " VALUES (1, 2, 1, 1000, 0, 1000, 0, 3, NULL, :at)"
        ),
        {"at": AT},
    )
    for external_id, merchant, role in [("o1", 1, "owner"), ("c1", 1, "cashier"),
                                        ("c2", 2, "cashier")]:
        connection.execute(
            text(
                "INSERT INTO staff (channel, external_id, merchant_id, created_at, role)"
                " VALUES ('telegram', :e, :m, :at, :r)"
            ),
            {"e": external_id, "m": merchant, "at": AT, "r": role},
        )
    connection.execute(
        text(
            "INSERT INTO staff_invites (code_hash, merchant_id, created_at, expires_at, role)"
            " VALUES ('i1', 1, :at, :at, 'cashier')"
        ),
        {"at": AT},
    )


@pytest.mark.parametrize("kind", DATABASES)
async def test_each_merchant_becomes_one_store(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = Database(url)
        try:
            async with db.write_engine.begin() as conn:
                await conn.run_sync(_to_0006_with_merchants)
            await upgrade(db)
            async with db.write_engine.connect() as conn:
                stores = (await conn.execute(
                    select(Store.id, Store.merchant_id, Store.name, Store.category,
                           Store.address, Store.lat_e6, Store.lon_e6, Store.cell, Store.hours,
                           Store.active, Store.created_at).order_by(Store.id)
                )).all()
                bought = (await conn.execute(
                    select(Purchase.merchant_id, Purchase.store_id).order_by(Purchase.id)
                )).all()
                redeemed = (await conn.execute(select(Redemption.store_id))).scalars().all()
                staff = (await conn.execute(
                    select(Staff.external_id, Staff.store_id).order_by(Staff.external_id)
                )).all()
                invites = (await conn.execute(select(StaffInvite.store_id))).scalars().all()
        finally:
            await db.dispose()
        assert [tuple(s) for s in stores] == [
            (n + 1, n + 1, name, category, address, round(lat * 1e6), round(lon * 1e6),
             geo.cell_of(lat, lon), hours, True, AT)
            for n, (name, category, address, lat, lon, hours) in enumerate(SHOPS)
        ]
        store_of = {merchant: store for store, merchant, *_ in stores}
        assert [tuple(r) for r in bought] == [(m, store_of[m]) for m in (1, 2, 2)]
        assert redeemed == [store_of[2]]
        assert [tuple(r) for r in staff] == [("c1", store_of[1]), ("c2", store_of[2]),
                                             ("o1", None)]
        assert invites == [None]  # an unused invite still makes a merchant-wide cashier

        service = await LedgerService.open(url)
        try:
            near = await service.nearby(SYSTEM, 30.2350, 119.7250, 500)
            today = await service.today(SYSTEM, 2, day=AT.date(), store_id=store_of[2])
        finally:
            await service.close()
        assert [(m.id, m.store_id, m.store_name) for m in near.merchants] == [
            (1, store_of[1], "绿源水果店"), (2, store_of[2], "青山咖啡")
        ]
        assert today.count == 1
