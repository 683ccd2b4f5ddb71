"""Migration 0007_refunds on a ledger built by 0006 with purchases and their mint lots: each lot
learns when its purchase minted it (so purchases inside the hold are pending and refundable
exactly after the upgrade), and a lot without a purchase row stays never-pending."""

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
from tests.test_migration_0006 import _to_0005_with_purchases

TIMES = [dt.datetime(2026, 11, d, 8, 30) for d in (1, 20, 27, 28, 29)]


def _to_0006_with_lots(connection: Connection) -> None:
    _to_0005_with_purchases(connection)
    for purchase_id, at in enumerate(TIMES, start=1):
        connection.execute(
            text("UPDATE purchases SET created_at = :at WHERE id = :id"),
            {"at": at, "id": purchase_id},
        )
    command.upgrade(alembic_config(connection), "0006_exit_cap")
    # A lot whose purchase row is not there (none is, in practice): minted before the hold.
    connection.execute(
        text(
            "INSERT INTO mint_lots (member_id, purchase_id, points_minted, points_left,"
            " mint_pool_fen, mint_points, capped_points, capped_fen)"
            " VALUES (3, 999, 5, 5, 1, 1, 0, 0)"
        )
    )


@pytest.mark.parametrize("kind", DATABASES)
async def test_lots_learn_when_their_purchase_minted_them(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = Database(url)
        try:
            async with db.write_engine.begin() as conn:
                await conn.run_sync(_to_0006_with_lots)
            await upgrade(db)
            async with db.write_engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(MintLot.purchase_id, MintLot.minted_at).order_by(MintLot.purchase_id)
                    )
                ).all()
                refunds = (await conn.execute(text("SELECT count(*) FROM purchase_refunds"))).one()
        finally:
            await db.dispose()
    assert [(int(p), at) for p, at in rows] == [
        (1, TIMES[0]),
        (3, TIMES[2]),
        (4, TIMES[3]),
        (999, None),
    ]
    assert refunds == (0,)
