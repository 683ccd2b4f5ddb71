"""WeChat mass sends as the WeChat side of announcements: the broadcast each one carries, and the
MASSSENDJOBFINISH report (status and counts) WeChat posts when the job ends

Revision ID: 0006_wechat_mass
Revises: 0003_wechat
Create Date: 2026-11-29 16:20:00

Only adds nullable columns: existing mass sends (made by hand, before announcements reached
WeChat) keep their rows and simply have no broadcast and no report.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_wechat_mass"
down_revision = "0005_identity_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wechat_mass_sends", schema=None) as batch_op:
        batch_op.add_column(sa.Column("broadcast_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("job_status", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("total_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("filter_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("sent_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("error_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_wechat_mass_sends_broadcast_id"), ["broadcast_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_wechat_mass_sends_msg_id"), ["msg_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wechat_mass_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wechat_mass_sends_msg_id"))
        batch_op.drop_index(batch_op.f("ix_wechat_mass_sends_broadcast_id"))
        for column in (
            "finished_at",
            "error_count",
            "sent_count",
            "filter_count",
            "total_count",
            "job_status",
            "broadcast_id",
        ):
            batch_op.drop_column(column)
