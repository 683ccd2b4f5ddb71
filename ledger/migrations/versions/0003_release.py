"""release at scale: live voucher lots indexed by expiry; release policy columns

Revision ID: 0003_release
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_release"
down_revision = "0002_merchants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feed_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pruned_before", sa.DateTime(), nullable=True))
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("policy", sa.String(length=16), server_default="fraction", nullable=False)
        )
        for name in ("airdrop_fen", "airdrop_shares", "share_purchase_id"):
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
            )
    with op.batch_alter_table("voucher_lots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voucher_lots_expires_at"))
        batch_op.create_index(
            "ix_voucher_lots_live_expires",
            ["expires_at", "id"],
            unique=False,
            sqlite_where=sa.text("remaining_fen > 0"),
            postgresql_where=sa.text("remaining_fen > 0"),
        )


def downgrade() -> None:
    with op.batch_alter_table("feed_state", schema=None) as batch_op:
        batch_op.drop_column("pruned_before")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        for name in ("share_purchase_id", "airdrop_shares", "airdrop_fen", "policy"):
            batch_op.drop_column(name)
    with op.batch_alter_table("voucher_lots", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_voucher_lots_live_expires",
            sqlite_where=sa.text("remaining_fen > 0"),
            postgresql_where=sa.text("remaining_fen > 0"),
        )
        batch_op.create_index(
            batch_op.f("ix_voucher_lots_expires_at"), ["expires_at"], unique=False
        )
