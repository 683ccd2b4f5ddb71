"""merchants: staff roles and revocation, undoing redemptions (issue 11)

Revision ID: 0002_merchants
Revises: 0001

Existing staff links become cashiers, except the earliest link of each merchant, which becomes
its owner: the rule "the first staff invite of a merchant makes an owner", applied to the links
made before roles existed. Used and unused invites keep working and make cashiers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_merchants"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), server_default="cashier", nullable=False)
        )
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("revoked_by", sa.String(length=200), nullable=True))
    with op.batch_alter_table("staff_invites", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), server_default="cashier", nullable=False)
        )
    op.create_table(
        "redemption_lots",
        sa.Column("redemption_id", _ID, nullable=False),
        sa.Column("lot_id", _ID, nullable=False),
        sa.Column("fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["voucher_lots.id"], name=op.f("fk_redemption_lots_lot_id_voucher_lots")
        ),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["redemptions.id"],
            name=op.f("fk_redemption_lots_redemption_id_redemptions"),
        ),
        sa.PrimaryKeyConstraint("redemption_id", "lot_id", name=op.f("pk_redemption_lots")),
    )
    op.create_table(
        "redemption_undos",
        sa.Column("redemption_id", _ID, nullable=False),
        sa.Column("undone_at", sa.DateTime(), nullable=False),
        sa.Column("undone_by", sa.String(length=200), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["redemptions.id"],
            name=op.f("fk_redemption_undos_redemption_id_redemptions"),
        ),
        sa.PrimaryKeyConstraint("redemption_id", name=op.f("pk_redemption_undos")),
    )
    # The earliest link of each merchant (ties broken by identity) becomes its owner.
    op.execute(
        """
        UPDATE staff SET role = 'owner'
        WHERE NOT EXISTS (
            SELECT 1 FROM staff AS earlier
            WHERE earlier.merchant_id = staff.merchant_id
              AND (earlier.created_at < staff.created_at
                   OR (earlier.created_at = staff.created_at
                       AND (earlier.channel < staff.channel
                            OR (earlier.channel = staff.channel
                                AND earlier.external_id < staff.external_id))))
        )
        """
    )


def downgrade() -> None:
    op.drop_table("redemption_undos")
    op.drop_table("redemption_lots")
    with op.batch_alter_table("staff_invites", schema=None) as batch_op:
        batch_op.drop_column("role")
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.drop_column("revoked_by")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("role")
