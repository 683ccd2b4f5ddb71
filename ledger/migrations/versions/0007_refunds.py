"""refunds of purchases, pending points (mint lots remember when they were minted), and the
purchases' indexes by time for the per-day cap, the hold and unusual volume (issue 11)

Revision ID: 0007_refunds
Revises: 0006_exit_cap
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_refunds"
down_revision = "0006_exit_cap"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# A lot was minted when its purchase was booked; lots whose purchase is gone stay NULL (held
# since before the hold existed: never pending).
BACKFILL = """
UPDATE mint_lots SET minted_at = (
    SELECT purchases.created_at FROM purchases WHERE purchases.id = mint_lots.purchase_id
)
"""


def upgrade() -> None:
    op.create_table(
        "purchase_refunds",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("purchase_id", BigId, nullable=False),
        sa.Column("merchant_id", BigId, nullable=False),
        sa.Column("member_id", BigId, nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("concession_fen", sa.BigInteger(), nullable=False),
        sa.Column("member_points", sa.BigInteger(), nullable=False),
        sa.Column("merchant_points", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("refunded_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["purchase_id"],
            ["purchases.id"],
            name=op.f("fk_purchase_refunds_purchase_id_purchases"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_purchase_refunds_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_purchase_refunds_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_refunds")),
    )
    op.create_index(
        op.f("ix_purchase_refunds_purchase_id"), "purchase_refunds", ["purchase_id"]
    )
    with op.batch_alter_table("mint_lots") as batch:
        batch.add_column(sa.Column("minted_at", sa.DateTime(), nullable=True))
    op.execute(BACKFILL)
    op.create_index("ix_mint_lots_member_minted", "mint_lots", ["member_id", "minted_at"])
    op.drop_index("ix_purchases_merchant_id", table_name="purchases")
    op.drop_index("ix_purchases_member_id", table_name="purchases")
    op.create_index(
        "ix_purchases_merchant_created", "purchases", ["merchant_id", "created_at"]
    )
    op.create_index(
        "ix_purchases_member_merchant", "purchases", ["member_id", "merchant_id", "created_at"]
    )
    op.create_index("ix_purchases_created_at", "purchases", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_purchases_created_at", table_name="purchases")
    op.drop_index("ix_purchases_member_merchant", table_name="purchases")
    op.drop_index("ix_purchases_merchant_created", table_name="purchases")
    op.create_index("ix_purchases_member_id", "purchases", ["member_id"])
    op.create_index("ix_purchases_merchant_id", "purchases", ["merchant_id"])
    op.drop_index("ix_mint_lots_member_minted", table_name="mint_lots")
    with op.batch_alter_table("mint_lots") as batch:
        batch.drop_column("minted_at")
    op.drop_index(op.f("ix_purchase_refunds_purchase_id"), table_name="purchase_refunds")
    op.drop_table("purchase_refunds")
