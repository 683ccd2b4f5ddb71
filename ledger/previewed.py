"""What was previewed is what is booked (DESIGN.md "Merchants and their money"; issue 11).

Between a preview and its confirmation the ledger's own figures can move: the daily release
grants vouchers, a lot expires, an admin changes the merchant's cap. The redemption carries the
figures the cashier read out to the customer, and is refused when the ledger would book others,
so the till shows a fresh preview instead of silently charging a different amount. Points to
earn are not compared: they follow the point price, which every purchase anywhere moves, and the
customer is never promised them.
"""

from __future__ import annotations

from ledger.errors import AmountsChanged, InvalidRequest
from ledger.models import RedeemRequest


def check_consistent(req: RedeemRequest) -> None:
    """The carried figures must add up to the bill.

    Raises ``InvalidRequest`` (with ``bill_fen``) when vouchers + pay ≠ bill, in fen.
    """
    if req.vouchers_applied_fen + req.pay_fen != req.bill_fen:
        raise InvalidRequest(
            "vouchers_applied_fen + pay_fen must equal bill_fen",
            bill_fen=req.bill_fen,
            vouchers_applied_fen=req.vouchers_applied_fen,
            pay_fen=req.pay_fen,
        )


def check_unchanged(req: RedeemRequest, applied_fen: int, points_to_earn: int) -> None:
    """Refuse when the ledger would apply other vouchers (fen) than the preview showed.

    Raises ``AmountsChanged`` whose details are the fresh figures: vouchers applied and pay in
    fen, points to earn at today's price.
    """
    if applied_fen != req.vouchers_applied_fen:
        raise AmountsChanged(
            "the amounts changed since the preview; show the customer a new preview",
            bill_fen=req.bill_fen,
            vouchers_applied_fen=applied_fen,
            pay_fen=req.bill_fen - applied_fen,
            points_to_earn=points_to_earn,
            previewed_vouchers_applied_fen=req.vouchers_applied_fen,
            previewed_pay_fen=req.pay_fen,
        )
