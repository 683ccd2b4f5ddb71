"""WeChat channel: inbound dedupe, shared token, service windows, choices, template and mass sends

Revision ID: 0003_wechat
Revises: 0002_channel_address
Create Date: 2026-11-29 13:00:03.484368
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_wechat"
down_revision = "0002_channel_address"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wechat_choices",
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("data", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("openid", "label", name=op.f("pk_wechat_choices")),
    )
    op.create_table(
        "wechat_deliveries",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_wechat_deliveries")),
    )
    with op.batch_alter_table("wechat_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wechat_deliveries_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "wechat_mass_sends",
        sa.Column("client_msg_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("msg_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_msg_id", name=op.f("pk_wechat_mass_sends")),
    )
    with op.batch_alter_table("wechat_mass_sends", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wechat_mass_sends_month"), ["month"], unique=False)

    op.create_table(
        "wechat_template_sends",
        sa.Column("msg_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("msg_id", name=op.f("pk_wechat_template_sends")),
    )
    op.create_table(
        "wechat_tokens",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("access_token", sa.String(length=1024), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_wechat_tokens")),
    )
    op.create_table(
        "wechat_windows",
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("message_at", sa.DateTime(), nullable=True),
        sa.Column("message_sent", sa.Integer(), nullable=False),
        sa.Column("event_at", sa.DateTime(), nullable=True),
        sa.Column("event_sent", sa.Integer(), nullable=False),
        sa.Column("unfollowed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("openid", name=op.f("pk_wechat_windows")),
    )


def downgrade() -> None:
    op.drop_table("wechat_windows")
    op.drop_table("wechat_tokens")
    op.drop_table("wechat_template_sends")
    with op.batch_alter_table("wechat_mass_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wechat_mass_sends_month"))

    op.drop_table("wechat_mass_sends")
    with op.batch_alter_table("wechat_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wechat_deliveries_created_at"))

    op.drop_table("wechat_deliveries")
    op.drop_table("wechat_choices")
