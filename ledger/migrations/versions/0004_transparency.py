"""transparency: the daily public record of figures and journal heads

Revision ID: 0004_transparency
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_transparency"
down_revision = "0003_release"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transparency_days",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.Column("pool_fen", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("heads", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transparency_days")),
        sa.UniqueConstraint("day", name=op.f("uq_transparency_days_day")),
    )


def downgrade() -> None:
    op.drop_table("transparency_days")
