"""The alliance's economic parameters.

Every rate is configuration (DESIGN.md); rates are basis points (1/10,000) so all the arithmetic
stays in integers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

BP = 10_000  # basis points in one whole


class Rules(BaseSettings):
    """Economic rules; read from ``GREENPOINTS_RULE_*`` so operators can tune without code."""

    model_config = SettingsConfigDict(env_prefix="GREENPOINTS_RULE_", frozen=True, extra="ignore")

    member_share_bp: int = Field(6000, ge=0, le=BP)
    merchant_share_bp: int = Field(1000, ge=0, le=BP)
    # Extra share of the concession a green-tagged purchase earns the member; taken from the part
    # that would otherwise stay in the pool, so it is always backed.
    green_bonus_bp: int = Field(1000, ge=0, le=BP)
    release_fraction_bp: int = Field(100, ge=1, le=BP)
    voucher_ttl_days: int = Field(90, ge=1, le=3650)
    expiring_notice_days: int = Field(3, ge=0, le=365)
    code_ttl_seconds: int = Field(300, ge=30, le=86_400)
    staff_invite_ttl_hours: int = Field(72, ge=1, le=24 * 365)
    default_concession_bp: int = Field(500, ge=100, le=5000)
    default_voucher_cap_bp: int = Field(2000, ge=0, le=BP)
    nearby_default_radius_m: int = Field(1500, ge=50, le=50_000)
    nearby_max_radius_m: int = Field(20_000, ge=50, le=200_000)
    max_amount_fen: int = Field(100_000_000, ge=1)  # one million yuan per bill
    shards: int = Field(16, ge=1, le=1024)
    release_batch_size: int = Field(5000, ge=1, le=100_000)
    # Events older than this are pruned (``greenpoints ledger prune-events``); readers that fall
    # further behind than this lose what was pruned.
    event_retention_days: int = Field(30, ge=1, le=3650)
    # Which daily release runs (DESIGN.md "The seeds' other rules", issue 13): "fraction" burns
    # release_fraction_bp of every holding; "airdrop" (共享购) divides airdrop_daily_fen of the
    # pool among holders by share value (members' and merchants' multiples of the concession).
    release_policy: Literal["fraction", "airdrop"] = "fraction"
    airdrop_daily_fen: int = Field(0, ge=0, le=10**13)
    airdrop_member_share_bp: int = Field(100_000, ge=0, le=1_000_000)
    airdrop_merchant_share_bp: int = Field(20_000, ge=0, le=1_000_000)
    # Undo a redemption (issue 11): owners until the end of its local day (0) or for this many
    # hours after it; the cashier who redeemed it for this many minutes, inside that window.
    undo_window_hours: int = Field(0, ge=0, le=24 * 31)
    undo_cashier_minutes: int = Field(15, ge=0, le=24 * 60)
    # Staff neither redeem their own code nor earn at their own merchant (issue 11). Off only in
    # the console demo, where one person plays customer and cashier.
    insider_limits: bool = True
    # Exit cap (封顶, DESIGN.md "The seeds' other rules", issue 13): when today's price makes a
    # purchase's remaining points worth exit_cap_multiple_bp / 10,000 times their mint value, the
    # release turns exit_cap_share_bp of their value into vouchers and burns them all.
    exit_cap: bool = False
    exit_cap_multiple_bp: int = Field(20_000, ge=BP, le=1_000_000)
    exit_cap_share_bp: int = Field(8000, ge=1, le=BP)

    # Money (issue 11; DESIGN.md "Merchants and their money"). Points a purchase mints are
    # pending for this many days (members' and the merchant's) and join the daily release only
    # after it, so a refund inside the hold reverses exactly; after it a refund is refused.
    points_hold_days: int = Field(7, ge=0, le=365)
    # Recording a purchase needs the member's live code, scanned or typed, which it spends; a
    # bare member id only from the system (CLI, seeding, bench). Off only for tests written
    # before the rule (tests/conftest.py).
    purchase_needs_code: bool = True
    # Purchases per member per merchant per local day (redemptions' paid parts included): at
    # most this many (0: no limit) and at most this many fen in all (0: no limit).
    purchase_cap_count: int = Field(20, ge=0, le=100_000)
    purchase_cap_fen: int = Field(0, ge=0, le=10**13)
    # Unusual volume (issue 11): a merchant's day is flagged when its purchase volume (fen) is
    # above unusual_volume_multiple_bp / 10,000 times the median of its own trailing
    # unusual_volume_days days (days without purchases count as 0) and above the floor.
    unusual_volume_multiple_bp: int = Field(50_000, ge=BP, le=10_000_000)
    unusual_volume_floor_fen: int = Field(500_000, ge=0, le=10**13)
    unusual_volume_days: int = Field(28, ge=1, le=366)

    def check(self) -> None:
        """Refuse rules that would mint more than the concession pays for."""
        if self.member_share_bp + self.merchant_share_bp + self.green_bonus_bp > BP:
            raise ValueError("member + merchant + green shares exceed 100 % of the concession")
