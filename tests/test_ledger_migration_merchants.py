"""Migration 0002_merchants on a ledger built by the previous schema (0001), on both databases:
existing staff links become cashiers except each merchant's earliest, which becomes its owner;
an invite made before roles existed still works and makes a cashier."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, text

from ledger.codes import invite_hash, new_invite_code
from ledger.db import Database
from ledger.migrate import alembic_config, upgrade
from ledger.models import RedeemInviteRequest
from ledger.principal import SYSTEM
from ledger.service import LedgerService
from tests.conftest import DATABASES
from tests.databases import fresh_database

T0 = dt.datetime(2026, 11, 1, 8, 0)


def _old_ledger(connection: Connection, invite: str) -> None:
    command.upgrade(alembic_config(connection), "0001")
    for n in (1, 2):
        connection.execute(
            text(
                "INSERT INTO merchants (id, name, category, address, lat_e6, lon_e6, cell, hours,"
                " concession_bp, voucher_cap_bp, active, created_at) VALUES (:id, :name, 'tea',"
                " '', 30000000, 119000000, 1, '', 500, 2000, true, :t)"
            ),
            {"id": n, "name": f"店{n}", "t": T0},
        )
    staff = [  # (channel, external id, merchant, linked at)
        ("telegram", "b", 1, T0 + dt.timedelta(hours=2)),
        ("telegram", "a", 1, T0 + dt.timedelta(hours=1)),  # merchant 1's earliest
        ("wechat", "c", 1, T0 + dt.timedelta(hours=3)),
        ("wechat", "z", 2, T0 + dt.timedelta(hours=5)),  # merchant 2's only one
        ("telegram", "y", 2, T0 + dt.timedelta(hours=5)),  # same moment: "telegram" < "wechat"
    ]
    for channel, external_id, merchant, at in staff:
        connection.execute(
            text(
                "INSERT INTO staff (channel, external_id, merchant_id, created_at)"
                " VALUES (:c, :e, :m, :t)"
            ),
            {"c": channel, "e": external_id, "m": merchant, "t": at},
        )
    connection.execute(
        text(
            "INSERT INTO staff_invites (code_hash, merchant_id, created_at, expires_at)"
            " VALUES (:h, 1, :t, :x)"
        ),
        {"h": invite_hash(invite), "t": T0, "x": dt.datetime(2100, 1, 1)},
    )


@pytest.mark.parametrize("kind", DATABASES)
async def test_existing_staff_get_roles(kind: str, tmp_path: Path) -> None:
    invite = new_invite_code()
    async with fresh_database(kind, tmp_path) as url:
        db = Database(url)
        try:
            async with db.write_engine.begin() as conn:
                await conn.run_sync(_old_ledger, invite)
            await upgrade(db)
            async with db.write_engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text("SELECT channel, external_id, role, revoked_at FROM staff")
                    )
                ).all()
        finally:
            await db.dispose()
        assert sorted(tuple(r) for r in rows) == [
            ("telegram", "a", "owner", None),
            ("telegram", "b", "cashier", None),
            ("telegram", "y", "owner", None),
            ("wechat", "c", "cashier", None),
            ("wechat", "z", "cashier", None),
        ]
        service = await LedgerService.open(url)
        try:
            joined = await service.redeem_staff_invite(
                SYSTEM, RedeemInviteRequest(code=invite, channel="telegram", external_id="new")
            )
            assert joined.role == "cashier"
            listed = await service.list_staff(SYSTEM, 1)
            assert [(s.role, s.external_id) for s in listed.staff] == [
                ("owner", "a"),
                ("cashier", "b"),
                ("cashier", "c"),
                ("cashier", "new"),
            ]
        finally:
            await service.close()
