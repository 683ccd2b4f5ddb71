"""Linked identities: one-time link codes, their throttle, the notice channel a linked member
chose, and the role x language tag each WeChat follower carries (issue 10)

Revision ID: 0005_identity_links
Revises: 0003_wechat
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_identity_links"
down_revision = "0004_neutral_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "link_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("used_channel", sa.String(length=16), nullable=True),
        sa.Column("used_address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_link_codes")),
    )
    with op.batch_alter_table("link_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_link_codes_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index("ix_link_codes_issuer", ["channel", "address"], unique=False)
    op.create_table(
        "link_attempts",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "address", name=op.f("pk_link_attempts")),
    )
    op.create_table(
        "notice_channels",
        sa.Column("member_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_notice_channels")),
    )
    op.create_table(
        "wechat_user_tags",
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("tagged_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("openid", name=op.f("pk_wechat_user_tags")),
    )


def downgrade() -> None:
    op.drop_table("wechat_user_tags")
    op.drop_table("notice_channels")
    with op.batch_alter_table("link_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_link_codes_issuer")
        batch_op.drop_index(batch_op.f("ix_link_codes_expires_at"))
    op.drop_table("link_attempts")
    op.drop_table("link_codes")
