"""Who is calling, and what each role may do.

Checks live in the service, not the HTTP layer, so the in-process client (the embedded default)
is held to exactly the same rules as a remote caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ledger.errors import Forbidden

RoleName = Literal["bot", "merchant", "admin", "system", "public"]


@dataclass(frozen=True)
class Principal:
    role: RoleName
    merchant_id: int | None = None  # set for merchant keys: the one merchant they act for
    key_id: int | None = None

    @property
    def label(self) -> str:
        if self.role == "merchant":
            return f"merchant:{self.merchant_id}"
        return f"{self.role}:{self.key_id or 0}"


SYSTEM = Principal("system")
# Anyone, without a key: only the public record (issue 13: the pool and price are public).
PUBLIC = Principal("public")

# Operation -> roles allowed. "system" (the CLI, tests' seeding) may do everything.
PERMISSIONS: dict[str, frozenset[str]] = {
    "members.resolve": frozenset({"bot", "admin"}),
    "members.update": frozenset({"bot", "admin"}),
    "members.link": frozenset({"bot"}),
    "identities.attach": frozenset({"bot"}),
    "members.balance": frozenset({"bot", "admin"}),
    "codes.issue": frozenset({"bot"}),
    "purchases.record": frozenset({"merchant", "bot"}),
    # A merchant's own refunds (the bot for an owner it names), and the alliance's back office.
    "purchases.refund": frozenset({"merchant", "bot", "admin"}),
    "redemptions.preview": frozenset({"merchant", "bot"}),
    "redemptions.redeem": frozenset({"merchant", "bot"}),
    "redemptions.today": frozenset({"merchant", "bot"}),
    "redemptions.undo": frozenset({"merchant", "bot", "admin"}),
    "merchants.read": frozenset({"bot", "merchant", "admin"}),
    "merchants.write": frozenset({"admin"}),
    "events.read": frozenset({"bot", "admin"}),
    "releases.run": frozenset({"admin"}),
    "stores.write": frozenset({"merchant", "admin", "bot"}),
    "stores.read": frozenset({"merchant", "admin", "bot"}),
    "staff.invite": frozenset({"merchant", "admin", "bot"}),
    "staff.list": frozenset({"merchant", "admin", "bot"}),
    "staff.revoke": frozenset({"merchant", "admin", "bot"}),
    "staff.redeem_invite": frozenset({"bot"}),
    "staff.lookup": frozenset({"bot", "admin"}),
    "stats.read": frozenset({"bot", "admin"}),
    "keys.revoke": frozenset({"admin"}),
    # Unusual purchase volume (issue 11): the back office, and the bot for its admins.
    "alerts.unusual_volume": frozenset({"bot", "admin"}),
    "transparency.pool": frozenset({"public", "bot", "merchant", "admin"}),
    "transparency.publish": frozenset({"admin"}),
    # The bot asks on behalf of the admins it knows (GREENPOINTS_ADMIN_IDS), as for stats.
    "circle.read": frozenset({"bot", "admin"}),
    # Statements (issue 11): the merchant's owners (through the bot), its own key, the alliance.
    "merchants.statement": frozenset({"bot", "merchant", "admin"}),
    "merchants.payout": frozenset({"admin"}),
}


def require(principal: Principal, operation: str) -> None:
    if principal.role == "system":
        return
    if principal.role not in PERMISSIONS[operation]:
        raise Forbidden(f"role {principal.role!r} may not {operation}", operation=operation)


def require_own_merchant(principal: Principal, merchant_id: int) -> None:
    """A merchant key acts for its own merchant only."""
    if principal.role == "merchant" and principal.merchant_id != merchant_id:
        raise Forbidden("this key belongs to another merchant", merchant_id=merchant_id)
