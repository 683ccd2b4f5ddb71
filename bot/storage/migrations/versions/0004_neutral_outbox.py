"""Neutral outbox rows for every channel, the notice policy's columns and indexes

Issue 9: Telegram's notice rows become neutral like WeChat's (``method`` ``notice``, payload
``{"kind", "fields"}``); an unsent row written before this (a Bot API ``sendMessage`` with its
text already rendered) is carried over as a ``written`` notice holding that text, so it is sent
exactly as it would have been. Issue 12: each chat's digest period and zone; broadcasts move
from priority 1 to 3 (receipts 0, expiry warnings 1, digests 2 go first); partial indexes on
held rows and an index for pruning by age.

Revision ID: 0004_neutral_outbox
Revises: 0003_wechat
Create Date: 2026-11-29 16:30:00
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_neutral_outbox"
down_revision = "0003_wechat"
branch_labels = None
depends_on = None

HELD = sa.text("state = 'held'")


def _payload(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        loaded = json.loads(raw)
        return loaded if isinstance(loaded, dict) else {}
    return dict(raw) if isinstance(raw, dict) else {}


def upgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.add_column(sa.Column("digest", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.create_index("ix_outbox_created_at", ["created_at"])
    op.create_index(
        "ix_outbox_held_due", "outbox", ["not_before"], sqlite_where=HELD, postgresql_where=HELD
    )
    op.create_index(
        "ix_outbox_held_chat",
        "outbox",
        ["channel", "address"],
        sqlite_where=HELD,
        postgresql_where=HELD,
    )

    bind = op.get_bind()
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.BigInteger),
        sa.column("kind", sa.String),
        sa.column("method", sa.String),
        sa.column("payload", sa.JSON),
        sa.column("state", sa.String),
        sa.column("priority", sa.Integer),
    )
    # Broadcasts' rows keep their content in the broadcasts table: only their priority moves.
    bind.execute(sa.update(outbox).where(outbox.c.priority == 1).values(priority=3))
    unsent = bind.execute(
        sa.select(outbox.c.id, outbox.c.payload).where(
            outbox.c.kind == "notice",
            outbox.c.method == "sendMessage",
            outbox.c.state.in_(("pending", "sending")),
        )
    ).all()
    for row_id, raw in unsent:
        text = _payload(raw).get("text")
        bind.execute(
            sa.update(outbox)
            .where(outbox.c.id == row_id)
            .values(
                method="notice",
                payload={"kind": "written", "fields": {"text": text if isinstance(text, str)
                                                               else ""}},
            )
        )


def downgrade() -> None:
    bind = op.get_bind()
    outbox = sa.table(
        "outbox",
        sa.column("priority", sa.Integer),
        sa.column("state", sa.String),
    )
    # Held rows have no meaning before this revision; notices written neutral stay neutral
    # (0003's WeChat sender reads them; its Telegram sender fails them, which is said here).
    bind.execute(sa.update(outbox).where(outbox.c.state == "held").values(state="skipped"))
    bind.execute(sa.update(outbox).where(outbox.c.priority.in_((1, 2))).values(priority=0))
    bind.execute(sa.update(outbox).where(outbox.c.priority == 3).values(priority=1))
    op.drop_index("ix_outbox_held_chat", table_name="outbox")
    op.drop_index("ix_outbox_held_due", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_created_at")
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("timezone")
        batch.drop_column("digest")
