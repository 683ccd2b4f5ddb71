"""key revocations (the generation every ledger process checks before trusting a cached key);
code look-ups in flight per actor (code_attempts.pending), so concurrent guesses are counted

Revision ID: 0005_hardening
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_hardening"
down_revision = "0004_transparency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_revocations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "key_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_key_revocations_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_revocations")),
    )
    with op.batch_alter_table("code_attempts") as batch:
        batch.add_column(sa.Column("pending", sa.Integer(), nullable=False, server_default="0"))
    # Keys revoked before this table existed count as one generation already passed.
    op.execute(
        "INSERT INTO key_revocations (key_id, revoked_at) "
        "SELECT id, revoked_at FROM api_keys WHERE revoked_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("key_revocations")
    with op.batch_alter_table("code_attempts") as batch:
        batch.drop_column("pending")
