"""Migration 0008_payouts on a ledger built by the schema before it: what earlier releases
turned of each merchant's points into settlement is carried over from the journal's merchant
batches into ``merchant_releases``, so statements of days before the upgrade show it too; the
members' batches and other entries are left alone."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, select, text

from ledger.db import Database
from ledger.migrate import alembic_config, upgrade
from ledger.schema import MerchantRelease
from tests.conftest import DATABASES
from tests.databases import fresh_database

AT = dt.datetime(2026, 11, 1, 8, 0)
LATER = dt.datetime(2026, 11, 2, 8, 0)


def _to_0006_with_releases(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "0006_exit_cap")
    for name in ("店一", "店二"):
        connection.execute(
            text(
                "INSERT INTO merchants (name, category, address, lat_e6, lon_e6, cell, hours,"
                " concession_bp, voucher_cap_bp, active, created_at)"
                " VALUES (:n, 'grocery', '', 0, 0, 0, '', 1000, 2000, true, :at)"
            ),
            {"n": name, "at": AT},
        )
    entries = [
        ("release:2026-11-01:merchants:1-2", AT, [
            ["merchant:1:points", "pt", -30], ["merchant:1:settlement", "fen", 29],
            ["merchant:2:points", "pt", -5], ["merchant:2:settlement", "fen", 4],
            ["issuance", "pt", 35], ["pool", "fen", -33]]),
        ("airdrop:2026-11-02:merchants:2-2", LATER, [
            ["merchant:2:settlement", "fen", 700], ["pool", "fen", -700]]),
        ("release:2026-11-01:members:1-9", AT, [
            ["member:1:points", "pt", -10], ["member:1:vouchers", "fen", 9],
            ["issuance", "pt", 10], ["pool", "fen", -9]]),
    ]
    for seq, (ref, at, postings) in enumerate(entries, start=1):
        connection.execute(
            text(
                "INSERT INTO journal_entries (shard, seq, kind, ref, created_at, postings,"
                " content_hash, prev_hash, hash) VALUES (0, :seq, 'release', :ref, :at, :p,"
                " 'x', 'x', 'x')"
            ),
            {"seq": seq, "ref": ref, "at": at, "p": json.dumps(postings)},
        )


@pytest.mark.parametrize("kind", DATABASES)
async def test_merchant_batches_become_merchant_releases(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = Database(url)
        try:
            async with db.write_engine.begin() as conn:
                await conn.run_sync(_to_0006_with_releases)
            await upgrade(db)
            async with db.write_engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(
                            MerchantRelease.merchant_id,
                            MerchantRelease.release_date,
                            MerchantRelease.created_at,
                            MerchantRelease.points,
                            MerchantRelease.fen,
                        ).order_by(MerchantRelease.merchant_id, MerchantRelease.release_date)
                    )
                ).all()
        finally:
            await db.dispose()
    assert [tuple(r) for r in rows] == [
        (1, dt.date(2026, 11, 1), AT, 30, 29),
        (2, dt.date(2026, 11, 1), AT, 5, 4),
        (2, dt.date(2026, 11, 2), LATER, 0, 700),
    ]
