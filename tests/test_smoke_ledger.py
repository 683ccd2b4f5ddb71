"""A first end-to-end pass over the ledger through both client transports."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from ledger.db import Database, Statement
from ledger_client import errors
from ledger_client.base import LedgerClient
from tests.conftest import Served, World


async def test_purchase_code_redeem_roundtrip(
    world: World, served: Served, bot_client: LedgerClient
) -> None:
    merchant = served.client("merchant")
    try:
        member = world.member_ids[0]
        bought = await merchant.record_purchase(world.merchant_id, member, 10_000, "smoke-0001")
        assert bought.concession_fen == 1000
        again = await merchant.record_purchase(world.merchant_id, member, 10_000, "smoke-0001")
        assert again == bought
        code = await bot_client.issue_code(member)
        assert len(code.numeric_code) == 20
        preview = await merchant.preview_redemption(code.numeric_code, world.merchant_id, 5000)
        assert preview.pay_fen == 5000 - preview.vouchers_applied_fen
        figures = {"vouchers_applied_fen": preview.vouchers_applied_fen, "pay_fen": preview.pay_fen}
        receipt = await merchant.redeem(
            code.link_code, world.merchant_id, 5000, "smoke-r-01", **figures
        )
        assert receipt.bill_fen == 5000
        with pytest.raises(errors.CodeUsed):
            await merchant.redeem(code.link_code, world.merchant_id, 5000, "smoke-r-02", **figures)
        replay = await merchant.redeem(
            code.link_code, world.merchant_id, 5000, "smoke-r-01", **figures
        )
        assert replay == receipt
        with pytest.raises(errors.Forbidden):
            await merchant.balance(member)
        balance = await bot_client.balance(member)
        assert balance.points == bought.member_points + receipt.points_earned
    finally:
        await merchant.close()


async def test_a_statement_sqlite_cannot_compile_is_a_bug_not_an_absent_database(
    tmp_path: Path,
) -> None:
    """A locked SQLite file is "unavailable, try again"; SQL it cannot run is our bug and must
    come out as one (a 500 in the logs), not hide behind "the database is unavailable"."""
    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    broken, fine = Statement(text("SELEC 1")), Statement(text("SELECT 1"))
    try:
        assert await db.run_direct(lambda conn: fine.rows(conn), readonly=True) == [(1,)]
        with pytest.raises(OperationalError, match="syntax error"):
            await db.run_direct(lambda conn: broken.rows(conn), readonly=True)
    finally:
        await db.dispose()
