"""Bill amounts as cashiers type them, turned into integer fen — or a reason to ask again.

Cashiers type what the till shows, in whatever keyboard they have: ``88``, ``88.5``, ``¥88.50``,
``88元``, full-width ``８８．５`` from a Chinese IME, ``1,288.00``. Anything that could mean two
different amounts (``88,50`` is 88.50 in some countries and a typo of 8,850 in others) is refused
rather than guessed, because a wrong guess charges a customer the wrong money.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import NoReturn

MAX_BILL_FEN = 100_000_000  # one million yuan: beyond any till; the ledger has its own limit

_CURRENCY = re.compile(r"^(?:¥|￥|rmb|cny)\s*|\s*(?:元|块|圆|rmb|cny|yuan)$", re.IGNORECASE)
_PLAIN = re.compile(r"^\d+(?:\.\d*)?$|^\.\d+$")
_GROUPED = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d*)?$")


class AmountProblem(enum.Enum):
    NOT_AN_AMOUNT = "not_an_amount"
    NOT_POSITIVE = "not_positive"
    TOO_PRECISE = "too_precise"  # more than two decimals: fen is the smallest unit
    TOO_LARGE = "too_large"
    AMBIGUOUS = "ambiguous"  # a comma that may be a decimal comma


class AmountError(ValueError):
    def __init__(self, problem: AmountProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def _strip_currency(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, _CURRENCY.sub("", text).strip()
    return text


def parse_bill(text: str) -> int:
    """The amount in fen; raises ``AmountError`` saying why it is not a usable bill."""
    cleaned = unicodedata.normalize("NFKC", text).strip().rstrip("。.").strip()
    # NFKC turns ￥ into ¥ and full-width digits into ASCII; a trailing dot is end of sentence.
    cleaned = _strip_currency(cleaned).replace(" ", "")
    if cleaned.startswith(("-", "−")):
        _refuse_negative(cleaned)
    if _GROUPED.match(cleaned):
        cleaned = cleaned.replace(",", "")
    elif "," in cleaned:
        raise AmountError(
            AmountProblem.AMBIGUOUS
            if re.fullmatch(r"\d+,\d+", cleaned)
            else AmountProblem.NOT_AN_AMOUNT
        )
    if not _PLAIN.match(cleaned):
        raise AmountError(AmountProblem.NOT_AN_AMOUNT)
    whole, _, fraction = cleaned.partition(".")
    if len(whole.lstrip("0")) > len(str(MAX_BILL_FEN)):
        raise AmountError(AmountProblem.TOO_LARGE)  # before Decimal, which would round it
    if len(fraction.rstrip("0")) > 2:
        raise AmountError(AmountProblem.TOO_PRECISE)
    try:
        fen = Decimal(cleaned).scaleb(2)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise AmountError(AmountProblem.NOT_AN_AMOUNT) from None
    if fen <= 0:
        raise AmountError(AmountProblem.NOT_POSITIVE)
    if fen > MAX_BILL_FEN:
        raise AmountError(AmountProblem.TOO_LARGE)
    return int(fen)


def _refuse_negative(cleaned: str) -> NoReturn:
    """A minus sign before a number is a refund, not a bill; before anything else, not a number."""
    rest = _strip_currency(cleaned[1:])
    if _PLAIN.match(rest.replace(",", "")):
        raise AmountError(AmountProblem.NOT_POSITIVE)
    raise AmountError(AmountProblem.NOT_AN_AMOUNT)
