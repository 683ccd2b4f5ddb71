"""merchants: staff roles and revocation (issue 11)

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
    with op.batch_alter_table("staff_invites", schema=None) as batch_op:
        batch_op.drop_column("role")
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.drop_column("revoked_by")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("role")
