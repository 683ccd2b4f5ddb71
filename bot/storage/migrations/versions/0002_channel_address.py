"""People keyed by (channel, address) instead of Telegram's integer chat id (issue 9)

Revision ID: 0002_channel_address
Revises: 0001
Create Date: 2026-11-29 14:25:00

Existing rows are Telegram's: channel 'telegram' and address the chat id in decimal. An
announcement still being enqueued keeps its position as an integer chat id, which has no place in
(channel, address) order, so the upgrade refuses to run while one is (wait for its state to leave
'enqueuing', which takes seconds, or cancel it); any other broadcast's cursor is never read again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_channel_address"
down_revision = "0001"
branch_labels = None
depends_on = None

_ADDRESS = "CAST(chat_id AS VARCHAR(64))"


def _key_columns(table: str, *, channel: bool) -> None:
    with op.batch_alter_table(table) as batch:
        if channel:
            batch.add_column(sa.Column("channel", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("address", sa.String(length=64), nullable=True))
    fill = f"address = {_ADDRESS}" + (", channel = 'telegram'" if channel else "")
    op.execute(f"UPDATE {table} SET {fill}")


def upgrade() -> None:
    enqueuing = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM broadcasts WHERE state = 'enqueuing'")
    )
    if enqueuing:
        raise RuntimeError(
            f"{enqueuing} announcement(s) are still being enqueued; upgrade once their state "
            "has left 'enqueuing' (or cancel them)"
        )

    _key_columns("chats", channel=False)
    with op.batch_alter_table("chats", recreate="always") as batch:
        batch.drop_index("ix_chats_locale_chat_id")
        batch.alter_column("address", existing_type=sa.String(length=64), nullable=False)
        batch.drop_constraint("pk_chats", type_="primary")
        batch.drop_column("chat_id")
        batch.create_primary_key("pk_chats", ["channel", "address"])
        batch.create_index("ix_chats_locale_address", ["locale", "channel", "address"])

    _key_columns("flows", channel=True)
    with op.batch_alter_table("flows", recreate="always") as batch:
        batch.alter_column("channel", existing_type=sa.String(length=16), nullable=False)
        batch.alter_column("address", existing_type=sa.String(length=64), nullable=False)
        batch.drop_constraint("pk_flows", type_="primary")
        batch.drop_column("chat_id")
        batch.create_primary_key("pk_flows", ["channel", "address"])

    _key_columns("outbox", channel=True)
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_due")  # each channel's sender claims its own rows
        batch.create_index("ix_outbox_due", ["channel", "state", "priority", "id"])
        batch.alter_column("channel", existing_type=sa.String(length=16), nullable=False)
        batch.alter_column("address", existing_type=sa.String(length=64), nullable=False)
        batch.drop_column("chat_id")

    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("admin_channel", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("admin_address", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("enqueue_channel", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("enqueue_address", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE broadcasts SET admin_channel = 'telegram', "
        "admin_address = CAST(admin_chat_id AS VARCHAR(64)), "
        "enqueue_channel = '', enqueue_address = ''"
    )
    with op.batch_alter_table("broadcasts") as batch:
        for name, width in (
            ("admin_channel", 16),
            ("admin_address", 64),
            ("enqueue_channel", 16),
            ("enqueue_address", 64),
        ):
            batch.alter_column(name, existing_type=sa.String(length=width), nullable=False)
        batch.drop_column("admin_chat_id")
        batch.drop_column("enqueue_cursor")


def downgrade() -> None:
    raise NotImplementedError("a WeChat openid has no Telegram chat id to go back to")
