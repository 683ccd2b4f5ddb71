"""The ledger's tables.

Balances live on the row they belong to (a member's points and vouchers on the member, a
merchant's on the merchant) so the common reads are one primary-key lookup. The pool, the points
issued and the concessions received are split into ``shards`` rows that are summed when read, so
concurrent purchases do not queue on one hot row; each shard also carries the head of its own
journal hash chain, so taking the shard's row lock is the only serialisation a purchase needs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only makes INTEGER PRIMARY KEY an autoincrementing rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    locale: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str | None] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    vouchers_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_active_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class MemberIdentity(Base):
    """One chat account (or card, or app login) of a member."""

    __tablename__ = "member_identities"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class IdentityLink(Base):
    """Each time a person linked a chat identity to a member with a one-time code (issue 10).

    The identity row itself says where it leads now; this record says when it was attached and
    which member it left (``from_member_id``, an unused member its first contact created), so a
    move is never an edit nobody can see afterwards.
    """

    __tablename__ = "identity_links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    from_member_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    external_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(40))
    address: Mapped[str] = mapped_column(String(300))
    lat_e6: Mapped[int] = mapped_column(Integer)
    lon_e6: Mapped[int] = mapped_column(Integer)
    cell: Mapped[int] = mapped_column(BigInteger)
    hours: Mapped[str] = mapped_column(String(100))
    concession_bp: Mapped[int] = mapped_column(Integer)
    voucher_cap_bp: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)

    # Covering: a nearby search reads only this index, never the table, until the page it shows.
    __table_args__ = (
        Index("ix_merchants_cell", "cell", "lat_e6", "lon_e6", "active", "category", "id"),
    )


class Store(Base):
    """One of a merchant's shops (门店, DESIGN.md "Merchants and their money", Roles): where the
    nearby search finds the merchant, its cashiers work and its purchases are made.

    ``category`` is the merchant's, copied here so the nearby search counts categories from this
    table's covering index alone (a merchant's category never changes after it is created).
    Every merchant has at least one store: ``merchants.create`` makes the first from the
    merchant's own place and hours, and migration 0009 did so for the merchants before it.
    """

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(40))
    address: Mapped[str] = mapped_column(String(300))
    lat_e6: Mapped[int] = mapped_column(Integer)
    lon_e6: Mapped[int] = mapped_column(Integer)
    cell: Mapped[int] = mapped_column(BigInteger)
    hours: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)

    # Covering: a nearby search reads only this index, never the table, until the page it shows.
    # A store is known by its name within its merchant (an import names it so, and staff must
    # not be asked to tell two stores of one name apart).
    __table_args__ = (
        Index("ix_stores_cell", "cell", "lat_e6", "lon_e6", "active", "category", "id"),
        UniqueConstraint("merchant_id", "name", name="uq_stores_merchant_name"),
    )


class MerchantBalance(Base):
    """A merchant's points and settlement, one row per shard.

    A merchant's row is only ever written by a transaction holding the same shard's lock, so a
    merchant that takes every purchase in town adds no lock of its own; its balance is the sum.
    """

    __tablename__ = "merchant_balances"

    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    settlement_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class Staff(Base):
    """A chat identity working for one merchant: an ``owner`` (or manager), who invites and
    revokes staff, or a ``cashier``. A revoked link stays, with ``revoked_at``, so the person can
    be told why they are refused and the record of who worked there is kept."""

    __tablename__ = "staff"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    role: Mapped[str] = mapped_column(String(16), server_default="cashier")
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    # The store a cashier works at; None: the whole merchant (owners, and cashiers invited
    # without a store).
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))


class StaffInvite(Base):
    __tablename__ = "staff_invites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    used_by: Mapped[str | None] = mapped_column(String(170))
    role: Mapped[str] = mapped_column(String(16), server_default="cashier")
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))


class Shard(Base):
    """One slice of the pool and of the points issued, and one journal hash chain."""

    __tablename__ = "shards"

    k: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pool_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    issued_points: Mapped[int] = mapped_column(BigInteger, default=0)
    concessions_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))


class JournalEntry(Base):
    """A balanced set of postings; ``hash`` chains it to the previous entry of its shard."""

    __tablename__ = "journal_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shard: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    postings: Mapped[list[Any]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("shard", "seq", name="uq_journal_entries_shard_seq"),)


class Purchase(Base):
    __tablename__ = "purchases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    concession_fen: Mapped[int] = mapped_column(BigInteger)
    member_points: Mapped[int] = mapped_column(BigInteger)
    merchant_points: Mapped[int] = mapped_column(BigInteger)
    price_pool_fen: Mapped[int] = mapped_column(BigInteger)
    price_points: Mapped[int] = mapped_column(BigInteger)
    green_tags: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    # The store it was made at (no foreign key: the service checked it, and the hot insert
    # stays as it was); None: not said (a merchant key that named no store, or before 0009).
    store_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # The merchant's pending points and its days' volume (issue 11), by time; covering for
        # a merchant's statement (ledger/statements.py): a month of its purchases is summed
        # from this index alone (0008_payouts).
        Index(
            "ix_purchases_merchant_created", "merchant_id", "created_at", "concession_fen",
            "amount_fen",
        ),
        # The per-day cap of a member at a merchant (issue 11); also every member_id lookup.
        Index("ix_purchases_member_merchant", "member_id", "merchant_id", "created_at"),
        # A day's purchases of every merchant (unusual volume, issue 11).
        Index("ix_purchases_created_at", "created_at"),
    )


class PurchaseRefund(Base):
    """A purchase refunded in full or in part (issue 11): what was given back, booked by its own
    journal entry (``kind`` "refund", ref ``refund:<id>``); the purchase row stays as booked.

    The figures taken back are cumulative differences (``ledger.refunds``), so refunds in any
    steps take back what one refund of their sum would.
    """

    __tablename__ = "purchase_refunds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    concession_fen: Mapped[int] = mapped_column(BigInteger)
    member_points: Mapped[int] = mapped_column(BigInteger)
    merchant_points: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200))
    refunded_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class VoucherLot(Base):
    """Vouchers from one release for one member; spent oldest-expiry first."""

    __tablename__ = "voucher_lots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    release_date: Mapped[dt.date] = mapped_column(Date)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    remaining_fen: Mapped[int] = mapped_column(BigInteger)
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expiring_notified: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        UniqueConstraint("member_id", "release_date", name="uq_voucher_lots_member_release"),
        Index("ix_voucher_lots_member_expires", "member_id", "expires_at"),
        # Only lots that still hold value: expiry and the expiring notices walk this by date, and
        # a spent or expired lot leaves it, so the walk never rereads 90 days of history.
        Index(
            "ix_voucher_lots_live_expires",
            "expires_at",
            "id",
            sqlite_where=text("remaining_fen > 0"),
            postgresql_where=text("remaining_fen > 0"),
        ),
    )


class Release(Base):
    """A day's voucher release; the cursors let an interrupted run resume where it stopped."""

    __tablename__ = "releases"

    release_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    fraction_bp: Mapped[int] = mapped_column(Integer)
    price_pool_fen: Mapped[int] = mapped_column(BigInteger)
    price_points: Mapped[int] = mapped_column(BigInteger)
    member_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    merchant_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    members_granted: Mapped[int] = mapped_column(BigInteger, default=0)
    merchants_granted: Mapped[int] = mapped_column(BigInteger, default=0)
    points_burned: Mapped[int] = mapped_column(BigInteger, default=0)
    vouchers_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The policy the day started with ("fraction" or "airdrop", ``Rules.release_policy``) and,
    # for an airdrop, what was fixed at its start: the fen to divide, the total share value it
    # is divided by, and the last purchase whose share value counts (later ones wait a day).
    policy: Mapped[str] = mapped_column(String(16), server_default="fraction")
    airdrop_fen: Mapped[int] = mapped_column(BigInteger, server_default="0")
    airdrop_shares: Mapped[int] = mapped_column(BigInteger, server_default="0")
    share_purchase_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The exit cap the day started with (issue 13): 0 when it was off; the capped lots' totals.
    exit_cap_multiple_bp: Mapped[int] = mapped_column(Integer, server_default="0")
    exit_cap_share_bp: Mapped[int] = mapped_column(Integer, server_default="0")
    capped_points: Mapped[int] = mapped_column(BigInteger, server_default="0")
    capped_fen: Mapped[int] = mapped_column(BigInteger, server_default="0")


class MintLot(Base):
    """The points one purchase minted a member and the price they were minted at (issue 13).

    A member's live lots hold exactly their points (older points leave first, ``mint_lots``);
    the exit cap compares today's price with each lot's mint price. A capped lot keeps its row
    (points_left 0) with what it became, which the member's balance shows.
    """

    __tablename__ = "mint_lots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    purchase_id: Mapped[int] = mapped_column(BigInteger)
    points_minted: Mapped[int] = mapped_column(BigInteger)
    points_left: Mapped[int] = mapped_column(BigInteger)
    # The mint price as the exact ratio pool fen / points (1/1 while the price was undefined).
    mint_pool_fen: Mapped[int] = mapped_column(BigInteger)
    mint_points: Mapped[int] = mapped_column(BigInteger)
    capped_on: Mapped[dt.date | None] = mapped_column(Date)
    capped_points: Mapped[int] = mapped_column(BigInteger, server_default="0")
    capped_fen: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # When the purchase minted it (issue 11): pending until ``Rules.points_hold_days`` after.
    minted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_mint_lots_member_id", "member_id", "id"),
        Index("ix_mint_lots_member_minted", "member_id", "minted_at"),
        Index(
            "ix_mint_lots_capped",
            "member_id",
            "capped_on",
            sqlite_where=text("capped_on IS NOT NULL"),
            postgresql_where=text("capped_on IS NOT NULL"),
        ),
    )


class RedemptionCode(Base):
    __tablename__ = "redemption_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16))  # live | used | revoked
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        # At most one live code per member, enforced by the database itself.
        Index(
            "uq_redemption_codes_live_member",
            "member_id",
            unique=True,
            sqlite_where=text("state = 'live'"),
            postgresql_where=text("state = 'live'"),
        ),
    )


class Redemption(Base):
    __tablename__ = "redemptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code_id: Mapped[int] = mapped_column(ForeignKey("redemption_codes.id"), unique=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    bill_fen: Mapped[int] = mapped_column(BigInteger)
    vouchers_applied_fen: Mapped[int] = mapped_column(BigInteger)
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    points_earned: Mapped[int] = mapped_column(BigInteger)
    purchase_id: Mapped[int | None] = mapped_column(BigInteger)
    staff: Mapped[str | None] = mapped_column(String(170))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    # The store it was made at (no foreign key: the service checked it, and the hot insert
    # stays as it was); None: not said (a merchant key that named no store, or before 0009).
    store_id: Mapped[int | None] = mapped_column(BigInteger)

    # Covering (0008_payouts): a statement's vouchers line and /today sum from the index alone.
    __table_args__ = (
        Index(
            "ix_redemptions_merchant_created", "merchant_id", "created_at", "vouchers_applied_fen",
            "bill_fen", "paid_fen",
        ),
    )


class RedemptionLot(Base):
    """How much of which voucher lot a redemption spent, so an undo puts back exactly those
    fen in exactly those lots, with their original expiry."""

    __tablename__ = "redemption_lots"

    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemptions.id"), primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("voucher_lots.id"), primary_key=True)
    fen: Mapped[int] = mapped_column(BigInteger)


class RedemptionUndo(Base):
    """A redemption undone (撤销核销); one per redemption, whose answer a second undo gets."""

    __tablename__ = "redemption_undos"

    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemptions.id"), primary_key=True)
    undone_at: Mapped[dt.datetime] = mapped_column(DateTime)
    undone_by: Mapped[str] = mapped_column(String(200))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("ix_redemption_undos_undone_at", "undone_at"),)


class MerchantRelease(Base):
    """What one day's release turned of a merchant's points into settlement (fen), and when its
    journal entry was posted: the statement's "points released" line, one row per merchant and
    release day (a release entry carries a whole batch of merchants, too big to read per
    statement). Written in the same transaction as the entry (ledger/releases.py)."""

    __tablename__ = "merchant_releases"

    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), primary_key=True)
    release_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    points: Mapped[int] = mapped_column(BigInteger)
    fen: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_merchant_releases_merchant_created", "merchant_id", "created_at"),)


class Payout(Base):
    """An admin's record that a merchant's settlement was paid (结算) through ``through`` (naive
    UTC, the end of the local ``period``): ``amount_fen`` is what was due for everything dated
    from ``covers_from`` (the previous payout's ``through``; None: the merchant's first line)
    up to ``through``; positive when the alliance paid the merchant, negative when the merchant
    paid the alliance. Journaled as ``payout:<id>`` (ledger/payouts.py)."""

    __tablename__ = "payouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    period: Mapped[str] = mapped_column(String(10))
    covers_from: Mapped[dt.datetime | None] = mapped_column(DateTime)
    through: Mapped[dt.datetime] = mapped_column(DateTime)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    reference: Mapped[str] = mapped_column(String(100), server_default="")

    __table_args__ = (
        UniqueConstraint("merchant_id", "through", name="uq_payouts_merchant_through"),
    )


class Event(Base):
    """The feed consumers read. ``seq`` (the cursor) is given after commit, in commit order."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    type: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[int | None] = mapped_column(BigInteger)
    merchant_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_events_member_id_id", "member_id", "id"),
        Index(
            "ix_events_unsequenced",
            "id",
            sqlite_where=text("seq IS NULL"),
            postgresql_where=text("seq IS NULL"),
        ),
    )


class FeedState(Base):
    """The single row sequencers lock, so feed positions follow commit order."""

    __tablename__ = "feed_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # Events created before this moment (naive UTC) may have been pruned (``events.prune``), so
    # ``verify`` expects no event for older journal entries; None: nothing was ever pruned.
    pruned_before: Mapped[dt.datetime | None] = mapped_column(DateTime)


class IdempotencyRecord(Base):
    """The first answer to a keyed write, replayed for every retry with the same key."""

    __tablename__ = "idempotency"

    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"))
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class KeyRevocation(Base):
    """One row per revoked API key. Its highest id is the revocation generation every ledger
    process compares against before trusting a cached key (issue 11: revocation is immediate)."""

    __tablename__ = "key_revocations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    revoked_at: Mapped[dt.datetime] = mapped_column(DateTime)


class CodeAttempt(Base):
    """Failed code look-ups per principal, for throttling guessers."""

    __tablename__ = "code_attempts"

    principal: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # Look-ups counted but not yet settled (ledger.throttle.reserve); reset with the window.
    pending: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    window_started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)


class TransparencyDay(Base):
    """The public record of one local day: the figures and the heads of every journal chain.

    Written once per day (after the release) and never changed. ``pool_fen`` and ``points`` are
    what the journal sums to up to exactly the published heads, so anyone holding a copy can
    check a database against it; ``hash`` chains each day's record to the one published before.
    """

    __tablename__ = "transparency_days"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    day: Mapped[dt.date] = mapped_column(Date, unique=True)
    published_at: Mapped[dt.datetime] = mapped_column(DateTime)
    pool_fen: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    heads: Mapped[list[Any]] = mapped_column(JSON)  # [[shard, seq, hash], ...] by shard
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
