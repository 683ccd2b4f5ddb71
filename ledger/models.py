"""What goes in and out of the ledger: one pydantic model per request and per answer.

The HTTP API validates requests with these models and the OpenAPI document is generated from the
same models, so the document cannot drift from what the server accepts.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

Locale = Literal["zh_Hans", "zh_Hant", "en"]
LOCALES: tuple[str, ...] = ("zh_Hans", "zh_Hant", "en")
Role = Literal["bot", "merchant", "admin"]
StaffRole = Literal["owner", "cashier"]
Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
# PostgreSQL text cannot hold U+0000 (a 500 found by the schemathesis run once its seed varied,
# issue 15); free text refuses it up front, as a 400, on both databases alike.
NO_NUL = r"^[^\x00]*$"
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
Id = Annotated[int, Field(ge=1, le=2**62)]
Fen = Annotated[int, Field(ge=1, le=100_000_000_000)]
GreenTag = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    """Inside the ledger a moment is a naive datetime in UTC, wherever it was read from."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _rfc3339(moment: dt.datetime) -> str:
    """On the wire it carries its offset: RFC 3339 (the document's ``date-time``) needs one, and a
    till reading a bare local-looking time could not tell it is UTC."""
    return _naive_utc(moment).isoformat() + "Z"


# A moment in an answer: naive UTC in Python (what the ledger compares against its clock),
# ``2026-11-22T06:55:22.029605Z`` in JSON. Replayed idempotent answers parse back to the same.
Timestamp = Annotated[
    dt.datetime,
    AfterValidator(_naive_utc),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- requests ---------------------------------------------------------------------------------


class Identity(Strict):
    channel: Channel
    external_id: ExternalId


class ResolveMemberRequest(Strict):
    channel: Channel
    external_id: ExternalId
    locale: Locale = "zh_Hans"
    display_name: Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL)] | None = None


class UpdateMemberRequest(Strict):
    locale: Locale | None = None
    display_name: Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL)] | None = None


class LinkIdentityRequest(Strict):
    channel: Channel
    external_id: ExternalId


class AttachIdentityRequest(Strict):
    """Attach a chat identity to a member for good: the identity is added, or moved off the
    member its first contact created when that member has nothing of its own yet."""

    member_id: Id
    channel: Channel
    external_id: ExternalId
    idempotency_key: IdempotencyKey


class PurchaseRequest(Strict):
    """A purchase names its member by ``code``, the member's live redemption code scanned or
    typed at the till (it is spent), or — the system only (seeding, bench) — by ``member_id``;
    exactly one of the two (issue 11: a till key must not mint points for ids it guesses)."""

    merchant_id: Id
    member_id: Id | None = None
    code: Code | None = None
    amount_fen: Fen
    green_tags: Annotated[list[GreenTag], Field(max_length=10)] = []
    idempotency_key: IdempotencyKey
    staff: Identity | None = None
    store_id: Id | None = None  # a key's call may name its store; a cashier's is their own

    @model_validator(mode="after")
    def _one_member(self) -> PurchaseRequest:
        if (self.member_id is None) == (self.code is None):
            raise ValueError("name the member by exactly one of code and member_id")
        return self


class RefundRequest(Strict):
    """Refund ``amount_fen`` of a purchase made at ``merchant_id`` (issue 11). Every field is
    in the idempotency fingerprint: the same key with another amount or reason is a conflict."""

    merchant_id: Id
    amount_fen: Fen
    reason: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] = ""
    idempotency_key: IdempotencyKey
    staff: Identity | None = None


class PreviewRequest(Strict):
    code: Code
    merchant_id: Id
    bill_fen: Fen
    staff: Identity | None = None


class RedeemRequest(Strict):
    """``vouchers_applied_fen`` and ``pay_fen`` are the figures of the preview the cashier read
    out; the ledger books them or refuses with ``amounts_changed`` (DESIGN.md, "What was
    previewed is what is booked")."""

    code: Code
    merchant_id: Id
    bill_fen: Fen
    vouchers_applied_fen: Annotated[int, Field(ge=0, le=100_000_000_000)]
    pay_fen: Annotated[int, Field(ge=0, le=100_000_000_000)]
    idempotency_key: IdempotencyKey
    staff: Identity | None = None
    store_id: Id | None = None  # a key's call may name its store; a cashier's is their own


class UndoRedemptionRequest(Strict):
    """``merchant_id``: the merchant the redemption was made at; ``staff``: who the bot acts for
    (an owner, or the cashier who redeemed it, within minutes)."""

    merchant_id: Id
    staff: Identity | None = None


Period = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?$")
]
"""A local calendar month (``2026-11``) or day (``2026-11-05``)."""


class PayoutRequest(Strict):
    """An admin's record that the merchant's settlement through the end of ``period`` was paid
    (either way); ``reference``: the bank transfer's number or a note, shown on statements."""

    period: Period
    idempotency_key: IdempotencyKey
    reference: Annotated[str, StringConstraints(max_length=100, pattern=NO_NUL)] = ""


class ReleaseRequest(Strict):
    date: dt.date | None = None


class StaffInviteRequest(Strict):
    """``role`` unset: the merchant's first invite makes an owner, later ones cashiers. ``staff``
    is the owner the bot acts for (an owner may invite cashiers only)."""

    merchant_id: Id
    role: StaffRole | None = None
    staff: Identity | None = None
    store_id: Id | None = None


class RevokeStaffRequest(Strict):
    """Who to revoke (``channel``, ``external_id``); ``staff`` is the owner the bot acts for."""

    channel: Channel
    external_id: ExternalId
    staff: Identity | None = None


class RedeemInviteRequest(Strict):
    code: Code
    channel: Channel
    external_id: ExternalId


class MerchantIn(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
    category: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    address: Annotated[str, StringConstraints(max_length=300, pattern=NO_NUL)] = ""
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    hours: Annotated[str, StringConstraints(max_length=100, pattern=NO_NUL)] = ""
    concession_bp: Annotated[int, Field(ge=100, le=5000)] = 500
    voucher_cap_bp: Annotated[int, Field(ge=0, le=10_000)] = 2000
    external_ref: Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL)] | None = None


class StoreIn(Strict):
    """A merchant's store (门店): its own name, address, place (degrees) and opening hours."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
    address: Annotated[str, StringConstraints(max_length=300, pattern=NO_NUL)] = ""
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    hours: Annotated[str, StringConstraints(max_length=100, pattern=NO_NUL)] = ""


class StoreRequest(StoreIn):
    """``staff``: the owner the bot acts for."""

    staff: Identity | None = None


# --- answers ----------------------------------------------------------------------------------


class MemberOut(Out):
    id: int
    locale: str
    display_name: str | None
    created: bool = False


class IdentityLinkOut(Out):
    """An identity attached to a member; ``moved_from`` is the unused member it left (None when
    it was new to the ledger or already this member's)."""

    member_id: int
    channel: str
    external_id: str
    moved_from: int | None = None
    linked_at: Timestamp


class PriceOut(Out):
    """Pool ÷ points in circulation; a report of today's ratio, never a promised return."""

    pool_fen: int
    points: int
    fen_per_point: str


class ActivityItem(Out):
    event_id: int
    type: str
    at: Timestamp
    points: int = 0
    vouchers_fen: int = 0
    amount_fen: int = 0
    merchant_id: int | None = None
    merchant_name: str | None = None


class CappedExit(Out):
    """One day's exit-cap conversion for a member: points burned, vouchers (fen) received."""

    date: dt.date
    points: int
    vouchers_fen: int


class BalanceOut(Out):
    member_id: int
    points: int
    points_value_fen: int
    # Of ``points``, those still in their hold (issue 11): not in the daily release yet, taken
    # back if their purchase is refunded.
    pending_points: int = 0
    price: PriceOut
    vouchers_fen: int
    nearest_expiry: Timestamp | None
    nearest_expiry_fen: int
    activity: list[ActivityItem]
    activity_next_before: int | None
    # Points that reached their exit cap and became vouchers, newest day first (issue 13).
    capped_exits: list[CappedExit] = []


class PurchaseOut(Out):
    purchase_id: int
    merchant_id: int
    member_id: int
    amount_fen: int
    concession_fen: int
    member_points: int
    merchant_points: int
    price: PriceOut


class CodeOut(Out):
    member_id: int
    link_code: str
    numeric_code: str
    expires_at: Timestamp
    vouchers_fen: int


class PreviewOut(Out):
    merchant_id: int
    bill_fen: int
    vouchers_applied_fen: int
    pay_fen: int
    points_to_earn: int
    member_masked: str
    code_expires_at: Timestamp


class RedemptionOut(Out):
    redemption_id: int
    merchant_id: int
    merchant_name: str
    bill_fen: int
    vouchers_applied_fen: int
    pay_fen: int
    points_earned: int
    member_masked: str
    at: Timestamp


class RefundOut(Out):
    """A purchase refunded in part or in full: what this refund took back (fen, points) and
    what of the purchase is left to refund."""

    refund_id: int
    purchase_id: int
    merchant_id: int
    member_id: int
    amount_fen: int
    concession_fen: int  # back to the merchant out of the pool
    member_points: int  # taken back from the member
    merchant_points: int  # taken back from the merchant
    refunded_fen: int  # of the purchase, all refunds so far, this one included
    refundable_fen: int  # of the purchase, still refundable
    at: Timestamp
    by: str


class UndoOut(Out):
    """A redemption undone: the vouchers (fen) back with the member, the points taken back."""

    redemption_id: int
    merchant_id: int
    bill_fen: int
    vouchers_returned_fen: int
    points_taken_back: int
    merchant_points_taken_back: int
    undone_at: Timestamp
    undone_by: str
    already: bool = False  # True when this redemption had been undone before this call


class StatementLine(Out):
    """One kind of movement at a merchant on one local day (``date``; None in the totals).

    ``credit_fen`` is owed *to* the merchant (vouchers its till accepted, its points released
    into settlement), ``debit_fen`` owed *by* it (the concession, 让利, on its purchases); an
    undo or any later correction is its own kind with negative amounts, never an edit.
    ``amount_fen``: the bills concerned; ``points``: the merchant's points concerned."""

    date: dt.date | None = None
    kind: str
    count: int
    amount_fen: int = 0
    points: int = 0
    credit_fen: int = 0
    debit_fen: int = 0


class PayoutOut(Out):
    """A recorded payout: ``amount_fen`` settled everything dated from ``covers_from`` (None:
    the merchant's first movement) to ``through``; positive when the alliance paid the
    merchant, negative when the merchant paid the alliance."""

    payout_id: int
    merchant_id: int
    period: str
    covers_from: Timestamp | None
    through: Timestamp
    amount_fen: int
    paid_at: Timestamp
    paid_by: str
    reference: str


StatementStatus = Literal["open", "paid", "unpaid", "nothing_due"]


class StatementOut(Out):
    """A merchant's statement (对账单/结算单) for local days ``from_date``..``to_date``.

    Due amounts are positive when the alliance owes the merchant, negative when the merchant
    owes the alliance. ``opening_due_fen``: carried forward, unpaid, from before the period;
    ``closing_due_fen`` = opening + ``net_fen`` (credit − debit) − ``paid_fen`` (payouts whose
    period ends inside this one). ``status``: ``open`` (the period has not ended), ``paid``
    (``paid_by`` settled it), ``unpaid`` (carried forward until paid) or ``nothing_due``."""

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
    status: StatementStatus
    payouts: list[PayoutOut]
    paid_by: PayoutOut | None
    as_of: Timestamp


class MerchantOut(Out):
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


class NearbyMerchant(MerchantOut):
    """A store found near a place: the merchant's terms with the store's address, place and
    hours (``id`` stays the merchant's, as the till and the bot use it)."""

    distance_m: int
    store_id: int | None = None
    store_name: str | None = None


class StoreOut(Out):
    id: int
    merchant_id: int
    merchant_name: str
    name: str
    address: str
    lat: float
    lon: float
    hours: str


class StoreListOut(Out):
    merchant_id: int
    stores: list[StoreOut]


class NearbyOut(Out):
    merchants: list[NearbyMerchant]
    total: int
    radius_m: int
    categories: dict[str, int]


class EventOut(Out):
    id: int
    seq: int
    type: str
    member_id: int | None
    merchant_id: int | None
    payload: dict[str, Any]
    created_at: Timestamp


class EventsPage(Out):
    events: list[EventOut]
    next_after: int


class ReleaseOut(Out):
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


class InviteOut(Out):
    code: str
    merchant_id: int
    expires_at: Timestamp
    role: StaffRole = "cashier"
    store_id: int | None = None


class StaffOut(Out):
    merchant_id: int
    merchant_name: str
    channel: str
    external_id: str
    role: StaffRole = "cashier"
    revoked_at: Timestamp | None = None
    store_id: int | None = None  # a cashier's store; None: the whole merchant
    store_name: str | None = None


class StaffMemberOut(Out):
    channel: str
    external_id: str
    role: StaffRole
    since: Timestamp
    revoked_at: Timestamp | None = None
    revoked_by: str | None = None
    store_id: int | None = None


class StaffListOut(Out):
    merchant_id: int
    staff: list[StaffMemberOut]


class TodayOut(Out):
    """``store_id`` set: one store's redemptions (a cashier's); None: the whole merchant's."""

    merchant_id: int
    date: dt.date
    count: int
    bill_fen: int
    vouchers_fen: int
    paid_fen: int
    store_id: int | None = None


class StatsOut(Out):
    members: int
    active_7d: int
    merchants: int
    points_outstanding: int
    vouchers_outstanding_fen: int
    pool_fen: int
    price: PriceOut


class UnusualMerchant(Out):
    """A merchant whose day's purchase volume (fen) is far above its own usual (issue 11)."""

    merchant_id: int
    name: str
    day_fen: int
    day_count: int
    median_fen: int  # of its trailing days' volumes (days without purchases count 0), floored


class UnusualVolumeOut(Out):
    date: dt.date
    multiple_bp: int  # flagged above this many 1/10,000 of the median
    floor_fen: int  # and above this many fen
    days: int  # trailing days the median is over
    merchants: list[UnusualMerchant]


class ImportReport(Out):
    imported: int  # merchant rows
    skipped: list[tuple[int, str]]
    stores: int = 0  # store rows (``merchant_ref``), added or updated


class ErrorBody(Out):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorOut(Out):
    error: ErrorBody


# --- transparency (issue 13) ------------------------------------------------------------------


class PublishRequest(Strict):
    """The local day whose public record to write (default: today)."""

    date: dt.date | None = None


class PublishedHead(Out):
    """Where one journal chain ended when a day's record was published."""

    shard: int
    seq: int
    hash: str


class PublicDay(Out):
    """One local day's public record: pool (fen) and points in circulation summed from the
    journal up to exactly ``heads``; ``hash`` chains it to the record published before it."""

    date: dt.date
    published_at: Timestamp
    pool_fen: int
    points: int
    fen_per_point: str
    heads: list[PublishedHead]
    prev_hash: str
    hash: str


class PublicPoolOut(Out):
    """Today's pool, points and price, and the daily records, oldest first (public, no key)."""

    as_of: Timestamp
    pool_fen: int
    points: int
    fen_per_point: str
    days: list[PublicDay]


# --- the 15-minute circle (issue 13) ----------------------------------------------------------


class CircleMerchant(Out):
    id: int
    name: str
    category: str
    lat: float
    lon: float
    distance_m: int  # straight line
    walk_m: int  # estimated on foot (straight line × the detour factor)
    walk_minutes: int


class CircleCategory(Out):
    """One everyday need: the merchant categories that meet it, and the nearest such merchant
    within the walk (None: a gap)."""

    key: str
    group: str  # "basic" (基本保障类) or "quality" (品质提升类), or as configured
    merchant_categories: list[str]
    count: int
    nearest: CircleMerchant | None


class CircleOut(Out):
    lat: float
    lon: float
    walk_m: int
    radius_m: int  # the straight-line radius the walk allows
    categories: list[CircleCategory]
    gaps: list[str]
    merchants: list[CircleMerchant]  # every alliance merchant within the walk, nearest first
