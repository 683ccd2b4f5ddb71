"""Errors the ledger reports to its callers.

One code per thing a caller can do about it; the HTTP layer maps each to a status and the client
maps each back to its own exception class, so the code string is the contract.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """A refusal the caller caused; the transaction that raised it has changed nothing."""

    code = "ledger_error"
    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InvalidRequest(LedgerError):
    """Malformed or out-of-range input."""

    code = "invalid_request"
    status = 400


class Unauthorized(LedgerError):
    """No valid API key."""

    code = "unauthorized"
    status = 401


class Forbidden(LedgerError):
    """The key's role may not do this."""

    code = "forbidden"
    status = 403


class NotFound(LedgerError):
    """An id that does not exist."""

    code = "not_found"
    status = 404


class MemberNotFound(LedgerError):
    """Unknown member id."""

    code = "member_not_found"
    status = 404


class MerchantNotFound(LedgerError):
    """Unknown merchant id."""

    code = "merchant_not_found"
    status = 404


class CodeNotFound(LedgerError):
    """No such redemption code."""

    code = "code_not_found"
    status = 404


class CodeExpired(LedgerError):
    """The redemption code has expired."""

    code = "code_expired"
    status = 410


class CodeUsed(LedgerError):
    """The redemption code was already redeemed."""

    code = "code_used"
    status = 409


class CodeRevoked(LedgerError):
    """A newer code replaced this one."""

    code = "code_revoked"
    status = 409


class AmountsChanged(LedgerError):
    """The ledger's figures differ from the preview the redemption carries; ``details`` holds
    the fresh ones (``vouchers_applied_fen``, ``pay_fen``, ``points_to_earn``)."""

    code = "amounts_changed"
    status = 409


class InviteNotFound(LedgerError):
    """No such staff invite."""

    code = "invite_not_found"
    status = 404


class InviteExpired(LedgerError):
    """The staff invite has expired."""

    code = "invite_expired"
    status = 410


class InviteUsed(LedgerError):
    """The staff invite was already used."""

    code = "invite_used"
    status = 409


class NotStaff(LedgerError):
    """The identity is not staff of that merchant."""

    code = "not_staff"
    status = 403


class StaffRevoked(LedgerError):
    """The identity's staff link to that merchant was revoked; a new invite links it again."""

    code = "staff_revoked"
    status = 403


class NotOwner(LedgerError):
    """Only an owner (or manager) of the merchant may do this; cashiers may not."""

    code = "not_owner"
    status = 403


class StaffNotFound(LedgerError):
    """The identity is not (and never was) staff of that merchant."""

    code = "staff_not_found"
    status = 404


class StoreNotFound(LedgerError):
    """No active store of that id at that merchant."""

    code = "store_not_found"
    status = 404


class UndoRefused(LedgerError):
    """The redemption cannot be undone; ``details["reason"]`` says why: ``window_closed``,
    ``cashier_window_closed``, ``not_redeemed_by_you``, ``points_already_used``,
    ``made_before_undo_existed`` or ``refunded`` (part of its bill was refunded)."""

    code = "undo_refused"
    status = 409


class RefundRefused(LedgerError):
    """The purchase cannot be refunded (issue 11); ``details["reason"]`` says why:
    ``refund_after_hold`` (its points may have been released), ``over_refund`` (more than is
    left of it), ``redemption_undone`` (its redemption was undone already) or
    ``points_already_used`` (the points to take back are no longer there)."""

    code = "refund_refused"
    status = 409


class PurchaseCapReached(LedgerError):
    """The member reached the day's purchases at this merchant (``Rules.purchase_cap_count``,
    ``Rules.purchase_cap_fen``; issue 11 insider limits)."""

    code = "purchase_cap_reached"
    status = 409


class InsiderRefused(LedgerError):
    """Staff of the merchant cannot redeem their own code or earn on their own purchases there."""

    code = "insider_refused"
    status = 403


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for a different request."""

    code = "idempotency_conflict"
    status = 409


class Throttled(LedgerError):
    """Too many failed attempts; wait and retry."""

    code = "throttled"
    status = 429


class UnsupportedMediaType(LedgerError):
    """A request body that is not JSON (by its Content-Type)."""

    code = "unsupported_media_type"
    status = 415


class Unavailable(LedgerError):
    """The ledger's storage is unreachable."""

    code = "unavailable"
    status = 503


ALL_ERRORS: tuple[type[LedgerError], ...] = (
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MemberNotFound,
    MerchantNotFound,
    CodeNotFound,
    CodeExpired,
    CodeUsed,
    CodeRevoked,
    AmountsChanged,
    InviteNotFound,
    InviteExpired,
    InviteUsed,
    NotStaff,
    StaffRevoked,
    NotOwner,
    StaffNotFound,
    UndoRefused,
    RefundRefused,
    PurchaseCapReached,
    InsiderRefused,
    IdempotencyConflict,
    Throttled,
    UnsupportedMediaType,
    Unavailable,
)


class IdentityInUse(LedgerError):
    """The chat identity already leads to a member with points, vouchers or history of their
    own. Linking it elsewhere would merge two members, and points cannot be transferred between
    members (DESIGN.md "Compliance"); the person keeps the two apart (issue 10)."""

    code = "identity_in_use"
    status = 409


class ReleaseDateRefused(LedgerError):
    """A release date after the local today, or a past day that is not a missed one (issue 12)."""

    code = "release_date_refused"
    status = 409


class PublishDateRefused(LedgerError):
    """A public record for a day after the local today, or before the newest record: the
    record chain follows the calendar, so a reader can trust its order (issue 13)."""

    code = "publish_date_refused"
    status = 409


class PayoutRefused(LedgerError):
    """A payout the ledger will not record; ``details["reason"]``: ``period_not_over`` (the
    period has not ended, so more may still be booked in it) or ``paid_through_later`` (a payout
    already covers a later day: payouts settle in calendar order, issue 11)."""

    code = "payout_refused"
    status = 409
