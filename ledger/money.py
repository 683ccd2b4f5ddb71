"""The money rules of DESIGN.md as pure integer functions.

Everything here is floor division on integers: the ledger never mints a fraction of a point or
pays a fraction of a fen it was not given, so rounding always favours the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.rules import BP, Rules


@dataclass(frozen=True)
class Price:
    """The point price as the exact ratio pool ÷ points in circulation.

    Until both are positive the price is the initial one fen per point.
    """

    pool_fen: int
    points: int

    @property
    def defined(self) -> bool:
        return self.pool_fen > 0 and self.points > 0

    def points_for(self, numerator_fen: int, denominator: int = 1) -> int:
        """How many whole points ``numerator_fen / denominator`` fen buys at this price."""
        if not self.defined:
            return numerator_fen // denominator
        return (numerator_fen * self.points) // (denominator * self.pool_fen)

    def value_of(self, points: int) -> int:
        """What ``points`` are worth at this price, in whole fen."""
        if not self.defined:
            return points
        return (points * self.pool_fen) // self.points

    def fen_per_point(self, digits: int = 4) -> str:
        """The price as a decimal string for display (reported, never promised)."""
        num, den = (self.pool_fen, self.points) if self.defined else (1, 1)
        scaled = (num * 10**digits) // den
        whole, frac = divmod(scaled, 10**digits)
        return f"{whole}.{frac:0{digits}d}"


@dataclass(frozen=True)
class PurchaseSplit:
    concession_fen: int
    member_points: int
    merchant_points: int


def split_purchase(
    amount_fen: int, concession_bp: int, green: bool, price: Price, rules: Rules
) -> PurchaseSplit:
    """Concession into the pool; the member and merchant are minted their shares' worth."""
    concession = amount_fen * concession_bp // BP
    member_bp = rules.member_share_bp + (rules.green_bonus_bp if green else 0)
    member_points = price.points_for(concession * member_bp, BP)
    merchant_points = price.points_for(concession * rules.merchant_share_bp, BP)
    return PurchaseSplit(concession, member_points, merchant_points)


def voucher_cap(bill_fen: int, cap_bp: int) -> int:
    return bill_fen * cap_bp // BP


def vouchers_applicable(bill_fen: int, cap_bp: int, available_fen: int) -> int:
    return max(0, min(available_fen, voucher_cap(bill_fen, cap_bp)))


@dataclass(frozen=True)
class ReleaseGrant:
    points_burned: int
    vouchers_fen: int


def release_grant(points: int, fraction_bp: int, price: Price) -> ReleaseGrant | None:
    """The day's conversion for one holder, or None when it would be worth less than one fen."""
    burned = points * fraction_bp // BP
    value = price.value_of(burned)
    if burned <= 0 or value <= 0:
        return None
    return ReleaseGrant(burned, value)
