"""Migration 0006_exit_cap on a ledger built by the schema before it: the points members hold
become mint lots of their newest purchases (the release burned the oldest first), each at the
price its purchase was booked at."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, select, text

from ledger.db import Database
from ledger.migrate import alembic_config, upgrade
from ledger.schema import MintLot
from tests.conftest import DATABASES
from tests.databases import fresh_database

AT = dt.datetime(2026, 11, 1, 8, 0)


def _to_0005_with_purchases(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "0005_hardening")
    connection.execute(
        text(
            "INSERT INTO merchants (name, category, address, lat_e6, lon_e6, cell, hours,"
            " concession_bp, voucher_cap_bp, active, created_at)"
            " VALUES ('店', 'grocery', '', 0, 0, 0, '', 1000, 2000, true, :at)"
        ),
        {"at": AT},
    )
    # Member 1 bought three times and the releases burned 30 points: 120 are left, all of the
    # newest two purchases' and 70 of the first's. Member 2 spent all; member 3 holds 10 points
    # no purchase minted (nothing to make a lot of).
    for points in (120, 0, 10):
        connection.execute(
            text(
                "INSERT INTO members (locale, points, vouchers_fen, created_at, last_active_at)"
                " VALUES ('zh_Hans', :p, 0, :at, :at)"
            ),
            {"p": points, "at": AT},
        )
    for member, minted, pool, pts in [
        (1, 100, 0, 0),  # undefined price: 1 fen per point
        (2, 40, 100, 70),
        (1, 30, 300, 200),
        (1, 20, 500, 260),
        (3, 0, 900, 300),
    ]:
        connection.execute(
            text(
                "INSERT INTO purchases (merchant_id, member_id, amount_fen, concession_fen,"
                " member_points, merchant_points, price_pool_fen, price_points, green_tags,"
                " created_at) VALUES (1, :m, 1000, 100, :p, 0, :pool, :pts, '[]', :at)"
            ),
            {"m": member, "p": minted, "pool": pool, "pts": pts, "at": AT},
        )


@pytest.mark.parametrize("kind", DATABASES)
async def test_held_points_become_lots_of_the_newest_purchases(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = Database(url)
        try:
            async with db.write_engine.begin() as conn:
                await conn.run_sync(_to_0005_with_purchases)
            await upgrade(db)
            async with db.write_engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(
                            MintLot.member_id,
                            MintLot.purchase_id,
                            MintLot.points_minted,
                            MintLot.points_left,
                            MintLot.mint_pool_fen,
                            MintLot.mint_points,
                            MintLot.capped_on,
                        ).order_by(MintLot.id)
                    )
                ).all()
        finally:
            await db.dispose()
    assert [tuple(r) for r in rows] == [
        (1, 1, 100, 70, 1, 1, None),
        (1, 3, 30, 30, 300, 200, None),
        (1, 4, 20, 20, 500, 260, None),
    ]
