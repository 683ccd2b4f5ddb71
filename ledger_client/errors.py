"""One exception class per ledger error code, so callers ``except CodeExpired`` and not strings."""

from __future__ import annotations

from typing import Any


class LedgerClientError(Exception):
    """The ledger refused or could not answer; ``code`` is the ledger's error code."""

    code = "ledger_error"

    def __init__(self, message: str, status: int = 0, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details or {}


class InvalidRequest(LedgerClientError):
    code = "invalid_request"


class Unauthorized(LedgerClientError):
    code = "unauthorized"


class Forbidden(LedgerClientError):
    code = "forbidden"


class NotFound(LedgerClientError):
    code = "not_found"


class MemberNotFound(NotFound):
    code = "member_not_found"


class MerchantNotFound(NotFound):
    code = "merchant_not_found"


class StoreNotFound(NotFound):
    code = "store_not_found"


class CodeProblem(LedgerClientError):
    """Any reason a redemption code cannot be used."""


class CodeNotFound(CodeProblem):
    code = "code_not_found"


class CodeExpired(CodeProblem):
    code = "code_expired"


class CodeUsed(CodeProblem):
    code = "code_used"


class CodeRevoked(CodeProblem):
    code = "code_revoked"


class AmountsChanged(LedgerClientError):
    """The ledger's figures differ from the preview the redemption carried: show a new one."""

    code = "amounts_changed"

    @property
    def vouchers_applied_fen(self) -> int:
        return int(self.details.get("vouchers_applied_fen", 0))

    @property
    def pay_fen(self) -> int:
        return int(self.details.get("pay_fen", 0))


class InviteProblem(LedgerClientError):
    """Any reason a staff invite cannot be used."""


class InviteNotFound(InviteProblem):
    code = "invite_not_found"


class InviteExpired(InviteProblem):
    code = "invite_expired"


class InviteUsed(InviteProblem):
    code = "invite_used"


class NotStaff(LedgerClientError):
    code = "not_staff"


class StaffRevoked(NotStaff):
    """The person's staff access was revoked (``details["revoked_at"]``)."""

    code = "staff_revoked"


class NotOwner(LedgerClientError):
    """Only an owner of the merchant may do this."""

    code = "not_owner"


class StaffNotFound(NotFound):
    code = "staff_not_found"


class UndoRefused(LedgerClientError):
    """The redemption cannot be undone; ``reason`` says why."""

    code = "undo_refused"

    @property
    def reason(self) -> str:
        return str(self.details.get("reason", ""))


class PayoutRefused(LedgerClientError):
    """The ledger will not record this payout; ``reason``: ``period_not_over`` or
    ``paid_through_later``."""

    code = "payout_refused"
class RefundRefused(LedgerClientError):
    """The purchase cannot be refunded; ``reason`` says why (refund_after_hold, over_refund,
    redemption_undone, points_already_used)."""

    code = "refund_refused"

    @property
    def reason(self) -> str:
        return str(self.details.get("reason", ""))


class PurchaseCapReached(LedgerClientError):
    """The member reached the day's purchases at this merchant."""

    code = "purchase_cap_reached"


class InsiderRefused(LedgerClientError):
    """The member is staff of this merchant: no redeeming their own code, no earning there."""

    code = "insider_refused"


class IdempotencyConflict(LedgerClientError):
    code = "idempotency_conflict"


class Throttled(LedgerClientError):
    code = "throttled"

    @property
    def retry_after(self) -> int:
        return int(self.details.get("retry_after", 60))


class IdentityInUse(LedgerClientError):
    """The identity's member has points, vouchers or history of their own: members are never
    merged, so it cannot be linked to another member (issue 10)."""

    code = "identity_in_use"


class Unavailable(LedgerClientError):
    """The ledger is down, slow or unreachable: try again shortly."""

    code = "unavailable"


class InternalError(LedgerClientError):
    code = "internal"


_ALL: list[type[LedgerClientError]] = [
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MemberNotFound,
    MerchantNotFound,
    StoreNotFound,
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
    IdentityInUse,
    Unavailable,
    InternalError,
    PayoutRefused,
]
BY_CODE: dict[str, type[LedgerClientError]] = {cls.code: cls for cls in _ALL}


def from_response(status: int, payload: Any) -> LedgerClientError:
    """The typed error for an error answer, whichever transport carried it."""
    body = payload.get("error", {}) if isinstance(payload, dict) else {}
    code = body.get("code") if isinstance(body, dict) else None
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    details = body.get("details") if isinstance(body, dict) else None
    if code in BY_CODE:
        cls = BY_CODE[code]
    elif status >= 500:
        cls = Unavailable if status in (502, 503, 504) else InternalError
    else:
        cls = InvalidRequest
    return cls(message or f"ledger answered {status}", status, details or {})
