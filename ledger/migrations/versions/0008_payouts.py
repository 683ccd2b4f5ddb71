"""statements and payouts (issue 11): payouts, what each release turned of a merchant's points
into settlement (carried over from the journal's release entries), and the indexes a merchant's
statement reads (purchases and redemptions by merchant and time, covering; undos by time)

Revision ID: 0008_payouts
Revises: 0006_exit_cap
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008_payouts"
down_revision = "0007_refunds"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_entries = sa.table(
    "journal_entries",
    sa.column("id", sa.BigInteger()),
    sa.column("kind", sa.String()),
    sa.column("ref", sa.String()),
    sa.column("created_at", sa.DateTime()),
    sa.column("postings", sa.JSON()),
)


def _releases(connection: sa.Connection) -> list[dict[str, Any]]:
    """One row per (merchant, release day) from the merchant batches already in the journal
    (``release:<day>:merchants:<a>-<b>``, ``airdrop:<day>:merchants:<a>-<b>``)."""
    rows: dict[tuple[int, dt.date], dict[str, Any]] = {}
    found = connection.execute(
        sa.select(_entries.c.ref, _entries.c.created_at, _entries.c.postings)
        .where(_entries.c.kind == "release", _entries.c.ref.like("%:merchants:%"))
        .order_by(_entries.c.id)
    )
    for ref, created_at, postings in found:
        day = dt.date.fromisoformat(str(ref).split(":")[1])
        if isinstance(postings, str):
            postings = json.loads(postings)
        for account, _unit, amount in postings:
            parts = str(account).split(":")
            if len(parts) != 3 or parts[0] != "merchant":
                continue
            row = rows.setdefault(
                (int(parts[1]), day),
                {
                    "merchant_id": int(parts[1]),
                    "release_date": day,
                    "created_at": created_at,
                    "points": 0,
                    "fen": 0,
                },
            )
            if parts[2] == "settlement":
                row["fen"] += int(amount)
            elif parts[2] == "points":
                row["points"] -= int(amount)  # the release burns them: a negative posting
    return list(rows.values())


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("merchant_id", BigId, nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("covers_from", sa.DateTime(), nullable=True),
        sa.Column("through", sa.DateTime(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_payouts_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("merchant_id", "through", name="uq_payouts_merchant_through"),
    )
    merchant_releases = op.create_table(
        "merchant_releases",
        sa.Column("merchant_id", BigId, nullable=False),
        sa.Column("release_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_merchant_releases_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("merchant_id", "release_date", name=op.f("pk_merchant_releases")),
    )
    op.create_index(
        "ix_merchant_releases_merchant_created",
        "merchant_releases",
        ["merchant_id", "created_at"],
    )
    with op.batch_alter_table("purchases") as batch:
        # 0007_refunds indexed purchases by (merchant_id, created_at); the statement's covering
        # index of the same name extends it, so a purchase still writes one index per merchant.
        batch.drop_index("ix_purchases_merchant_created")
        batch.create_index(
            "ix_purchases_merchant_created",
            ["merchant_id", "created_at", "concession_fen", "amount_fen"],
        )
    op.create_index("ix_redemption_undos_undone_at", "redemption_undos", ["undone_at"])
    with op.batch_alter_table("redemptions") as batch:
        batch.drop_index("ix_redemptions_merchant_created")
        batch.create_index(
            "ix_redemptions_merchant_created",
            ["merchant_id", "created_at", "vouchers_applied_fen", "bill_fen", "paid_fen"],
        )
    carried = _releases(op.get_bind())
    if carried:
        op.bulk_insert(merchant_releases, carried)


def downgrade() -> None:
    with op.batch_alter_table("redemptions") as batch:
        batch.drop_index("ix_redemptions_merchant_created")
        batch.create_index("ix_redemptions_merchant_created", ["merchant_id", "created_at"])
    op.drop_index("ix_redemption_undos_undone_at", table_name="redemption_undos")
    with op.batch_alter_table("purchases") as batch:
        batch.drop_index("ix_purchases_merchant_created")
        batch.create_index("ix_purchases_merchant_created", ["merchant_id", "created_at"])
    op.drop_index("ix_merchant_releases_merchant_created", table_name="merchant_releases")
    op.drop_table("merchant_releases")
    op.drop_table("payouts")
