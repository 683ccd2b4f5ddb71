"""The answers the ledger gives, as the client reads them.

These mirror ``ledger.models`` on purpose: a client must not need the server's code to be
deployed (the bot runs against a remote ledger), and unknown fields are ignored so the ledger
can add fields without breaking deployed bots. The contract tests run every call through both
transports, so a field renamed on one side fails them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _naive_utc(cls, value: Any) -> Any:
        """The ledger writes moments as RFC 3339 in UTC (``...Z``); callers get naive UTC, the
        convention the bot compares against its own clock, whichever form arrives."""
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value


class Member(Model):
    id: int
    locale: str
    display_name: str | None = None
    created: bool = False


class IdentityLink(Model):
    """An identity attached to a member; ``moved_from``: the unused member it left."""

    member_id: int
    channel: str
    external_id: str
    moved_from: int | None = None
    linked_at: dt.datetime


class Price(Model):
    pool_fen: int
    points: int
    fen_per_point: str


class Activity(Model):
    event_id: int
    type: str
    at: dt.datetime
    points: int = 0
    vouchers_fen: int = 0
    amount_fen: int = 0
    merchant_id: int | None = None
    merchant_name: str | None = None


class CappedExit(Model):
    """Points that reached their exit cap (issue 13) on ``date`` and became vouchers (fen)."""

    date: dt.date
    points: int
    vouchers_fen: int


class Balance(Model):
    member_id: int
    points: int
    pending_points: int = 0  # of ``points``, still in their hold after a purchase
    points_value_fen: int
    price: Price
    vouchers_fen: int
    nearest_expiry: dt.datetime | None
    nearest_expiry_fen: int
    activity: list[Activity]
    activity_next_before: int | None
    capped_exits: list[CappedExit] = []


class PurchaseResult(Model):
    purchase_id: int
    merchant_id: int
    member_id: int
    amount_fen: int
    concession_fen: int
    member_points: int
    merchant_points: int
    price: Price


class RedemptionCode(Model):
    member_id: int
    link_code: str
    numeric_code: str
    expires_at: dt.datetime
    vouchers_fen: int


class Preview(Model):
    merchant_id: int
    bill_fen: int
    vouchers_applied_fen: int
    pay_fen: int
    points_to_earn: int
    member_masked: str
    code_expires_at: dt.datetime


class Receipt(Model):
    redemption_id: int
    merchant_id: int
    merchant_name: str
    bill_fen: int
    vouchers_applied_fen: int
    pay_fen: int
    points_earned: int
    member_masked: str
    at: dt.datetime


class UnusualMerchant(Model):
    merchant_id: int
    name: str
    day_fen: int
    day_count: int
    median_fen: int


class UnusualVolume(Model):
    date: dt.date
    multiple_bp: int
    floor_fen: int
    days: int
    merchants: list[UnusualMerchant]


class Refund(Model):
    refund_id: int
    purchase_id: int
    merchant_id: int
    member_id: int
    amount_fen: int
    concession_fen: int
    member_points: int
    merchant_points: int
    refunded_fen: int
    refundable_fen: int
    at: dt.datetime
    by: str


class Undo(Model):
    redemption_id: int
    merchant_id: int
    bill_fen: int
    vouchers_returned_fen: int
    points_taken_back: int
    merchant_points_taken_back: int
    undone_at: dt.datetime
    undone_by: str
    already: bool = False  # undone before this call: nothing changed now


class Merchant(Model):
    id: int
    name: str
    category: str
    address: str
    lat: float
    lon: float
    hours: str
    concession_bp: int
    voucher_cap_bp: int
    external_ref: str | None = None


class NearbyMerchant(Merchant):
    """A store near a place: the merchant's name and terms, the store's address and hours."""

    distance_m: int
    store_id: int | None = None
    store_name: str | None = None


class Store(Model):
    id: int
    merchant_id: int
    merchant_name: str
    name: str
    address: str
    lat: float
    lon: float
    hours: str


class StoreList(Model):
    merchant_id: int
    stores: list[Store]


class Nearby(Model):
    merchants: list[NearbyMerchant]
    total: int
    radius_m: int
    categories: dict[str, int]


class Event(Model):
    id: int
    seq: int
    type: str
    member_id: int | None
    merchant_id: int | None
    payload: dict[str, Any]
    created_at: dt.datetime


class EventsPage(Model):
    events: list[Event]
    next_after: int


class ReleaseResult(Model):
    date: dt.date
    state: str
    members_granted: int
    merchants_granted: int
    points_burned: int
    vouchers_fen: int
    expired_lots: int
    expiring_notices: int
    # Of points_burned and vouchers_fen: what the exit cap converted (issue 13).
    capped_points: int = 0
    capped_fen: int = 0


class StaffInvite(Model):
    code: str
    merchant_id: int
    expires_at: dt.datetime
    role: str = "cashier"
    store_id: int | None = None


class StaffLink(Model):
    merchant_id: int
    merchant_name: str
    channel: str
    external_id: str
    role: str = "cashier"  # "owner" or "cashier"
    revoked_at: dt.datetime | None = None
    store_id: int | None = None  # a cashier's store; None: the whole merchant
    store_name: str | None = None


class StaffMember(Model):
    channel: str
    external_id: str
    role: str
    since: dt.datetime
    revoked_at: dt.datetime | None = None
    revoked_by: str | None = None
    store_id: int | None = None


class StaffList(Model):
    merchant_id: int
    staff: list[StaffMember]


class StaffLookup(Model):
    staff: StaffLink | None


class Today(Model):
    merchant_id: int
    date: dt.date
    count: int
    bill_fen: int
    vouchers_fen: int
    paid_fen: int
    store_id: int | None = None  # one store's day; None: the whole merchant's


class StatementLine(Model):
    """One kind of movement on one local day (``date`` None in the totals): ``credit_fen`` owed
    to the merchant, ``debit_fen`` owed by it."""

    date: dt.date | None = None
    kind: str
    count: int
    amount_fen: int = 0
    points: int = 0
    credit_fen: int = 0
    debit_fen: int = 0


class Payout(Model):
    """A recorded payout; ``amount_fen`` positive when the alliance paid the merchant."""

    payout_id: int
    merchant_id: int
    period: str
    covers_from: dt.datetime | None
    through: dt.datetime
    amount_fen: int
    paid_at: dt.datetime
    paid_by: str
    reference: str


class Statement(Model):
    """A merchant's statement (对账单); due amounts positive when owed to the merchant."""

    merchant_id: int
    merchant_name: str
    period: str
    from_date: dt.date
    to_date: dt.date
    opening_due_fen: int
    lines: list[StatementLine]
    totals: list[StatementLine]
    credit_fen: int
    debit_fen: int
    net_fen: int
    paid_fen: int
    closing_due_fen: int
    status: str
    payouts: list[Payout]
    paid_by: Payout | None
    as_of: dt.datetime


class Stats(Model):
    members: int
    active_7d: int
    merchants: int
    points_outstanding: int
    vouchers_outstanding_fen: int
    pool_fen: int
    price: Price


class PublishedHead(Model):
    shard: int
    seq: int
    hash: str


class PublicDay(Model):
    """One local day's public record; the price is reported, never promised."""

    date: dt.date
    published_at: dt.datetime
    pool_fen: int
    points: int
    fen_per_point: str
    heads: list[PublishedHead]
    prev_hash: str
    hash: str


class PublicPool(Model):
    as_of: dt.datetime
    pool_fen: int
    points: int
    fen_per_point: str
    days: list[PublicDay]


class CircleMerchant(Model):
    id: int
    name: str
    category: str
    lat: float
    lon: float
    distance_m: int
    walk_m: int
    walk_minutes: int


class CircleCategory(Model):
    key: str
    group: str
    merchant_categories: list[str]
    count: int
    nearest: CircleMerchant | None


class Circle(Model):
    lat: float
    lon: float
    walk_m: int
    radius_m: int
    categories: list[CircleCategory]
    gaps: list[str]
    merchants: list[CircleMerchant]
