"""identity links: when a chat identity was attached to a member with a one-time code, and the
unused member it left (issue 10)

Revision ID: 0010_identity_link
Revises: 0006_exit_cap
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_identity_link"
down_revision = "0009_stores"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "identity_links",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("member_id", BigId, nullable=False),
        sa.Column("from_member_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_identity_links_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_links")),
    )
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_links_member_id"), ["member_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_links_member_id"))
    op.drop_table("identity_links")
