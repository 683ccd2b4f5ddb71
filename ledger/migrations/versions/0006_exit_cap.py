"""mint lots (the points each purchase minted and their mint price) and the exit cap a release
started with (issue 13); existing points become lots, newest purchases first

Revision ID: 0006_exit_cap
Revises: 0005_hardening
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_exit_cap"
down_revision = "0005_hardening"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Points already held came from the member's purchases; the release burned the oldest first, so
# what is left sits in the newest purchases: each purchase keeps what the member's points leave
# after the newer purchases are counted, between 0 and what it minted.
BACKFILL = """
INSERT INTO mint_lots (member_id, purchase_id, points_minted, points_left, mint_pool_fen,
                       mint_points, capped_on, capped_points, capped_fen)
SELECT member_id, id, member_points, lft, mp, mpts, NULL, 0, 0 FROM (
    SELECT p.member_id, p.id, p.member_points,
           CASE WHEN m.points - p.newer <= 0 THEN 0
                WHEN m.points - p.newer >= p.member_points THEN p.member_points
                ELSE m.points - p.newer END AS lft,
           p.mp, p.mpts
    FROM (
        SELECT id, member_id, member_points,
               COALESCE(SUM(member_points) OVER (
                   PARTITION BY member_id ORDER BY id DESC
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS newer,
               CASE WHEN price_pool_fen > 0 AND price_points > 0 THEN price_pool_fen ELSE 1 END
                   AS mp,
               CASE WHEN price_pool_fen > 0 AND price_points > 0 THEN price_points ELSE 1 END
                   AS mpts
        FROM purchases WHERE member_points > 0
    ) AS p JOIN members AS m ON m.id = p.member_id
) AS x WHERE lft > 0 ORDER BY id
"""


def upgrade() -> None:
    op.create_table(
        "mint_lots",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("member_id", BigId, nullable=False),
        sa.Column("purchase_id", sa.BigInteger(), nullable=False),
        sa.Column("points_minted", sa.BigInteger(), nullable=False),
        sa.Column("points_left", sa.BigInteger(), nullable=False),
        sa.Column("mint_pool_fen", sa.BigInteger(), nullable=False),
        sa.Column("mint_points", sa.BigInteger(), nullable=False),
        sa.Column("capped_on", sa.Date(), nullable=True),
        sa.Column("capped_points", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("capped_fen", sa.BigInteger(), nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_mint_lots_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mint_lots")),
    )
    op.create_index("ix_mint_lots_member_id", "mint_lots", ["member_id", "id"])
    op.create_index(
        "ix_mint_lots_capped",
        "mint_lots",
        ["member_id", "capped_on"],
        sqlite_where=sa.text("capped_on IS NOT NULL"),
        postgresql_where=sa.text("capped_on IS NOT NULL"),
    )
    with op.batch_alter_table("releases") as batch:
        for name in ("exit_cap_multiple_bp", "exit_cap_share_bp"):
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        for name in ("capped_points", "capped_fen"):
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        for name in ("capped_fen", "capped_points", "exit_cap_share_bp", "exit_cap_multiple_bp"):
            batch.drop_column(name)
    op.drop_index("ix_mint_lots_capped", table_name="mint_lots")
    op.drop_index("ix_mint_lots_member_id", table_name="mint_lots")
    op.drop_table("mint_lots")
