"""stores (门店): a merchant's shops, where nearby search finds it and its cashiers work (issue 11)

Revision ID: 0009_stores
Revises: 0006_exit_cap

Every merchant becomes one store carrying its name, address, place and hours (a merchant before
stores had exactly one location). The redemptions and purchases made before belong to that one
store, and so do its cashiers; owners stay merchant-wide (store NULL). Unused invites keep
working and make merchant-wide cashiers, as invites without a store do from now on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_stores"
down_revision = "0008_payouts"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ONE_STORE = "(SELECT MIN(s.id) FROM stores AS s WHERE s.merchant_id = {table}.merchant_id)"


def upgrade() -> None:
    op.create_table(
        "stores",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("merchant_id", BigId, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("lat_e6", sa.Integer(), nullable=False),
        sa.Column("lon_e6", sa.Integer(), nullable=False),
        sa.Column("cell", sa.BigInteger(), nullable=False),
        sa.Column("hours", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_stores_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stores")),
        sa.UniqueConstraint("merchant_id", "name", name="uq_stores_merchant_name"),
    )
    op.execute(
        "INSERT INTO stores (merchant_id, name, category, address, lat_e6, lon_e6, cell, hours,"
        " active, created_at)"
        " SELECT id, name, category, address, lat_e6, lon_e6, cell, hours, active, created_at"
        " FROM merchants ORDER BY id"
    )
    # Built after the copy: one sort instead of a million index insertions.
    op.create_index(
        "ix_stores_cell", "stores", ["cell", "lat_e6", "lon_e6", "active", "category", "id"]
    )
    for table in ("staff", "staff_invites"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("store_id", BigId, nullable=True))
            batch.create_foreign_key(
                op.f(f"fk_{table}_store_id_stores"), "stores", ["store_id"], ["id"]
            )
    for table in ("purchases", "redemptions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("store_id", sa.BigInteger(), nullable=True))
        op.execute(f"UPDATE {table} SET store_id = {ONE_STORE.format(table=table)}")
    staff_store = ONE_STORE.format(table="staff")
    op.execute(f"UPDATE staff SET store_id = {staff_store} WHERE role <> 'owner'")


def downgrade() -> None:
    for table in ("purchases", "redemptions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("store_id")
    for table in ("staff", "staff_invites"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"fk_{table}_store_id_stores"), type_="foreignkey")
            batch.drop_column("store_id")
    op.drop_index("ix_stores_cell", table_name="stores")
    op.drop_table("stores")
