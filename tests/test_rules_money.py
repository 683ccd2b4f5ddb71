"""The money rules at their small edges, with answers worked out by hand from DESIGN.md
("Voucher release": a fraction of each holder's points converted at the current price, in whole
fen; "Point price" = pool ÷ points, initially 1 fen per point). Found by mutation testing
(docs/mutation.md): the property tests held for a grant cut off one fen or one point too early.
"""

from __future__ import annotations

import pytest

from ledger.journal import ShardDelta, check_balanced, shard_delta
from ledger.money import Price, ReleaseGrant, release_grant


@pytest.mark.parametrize(
    ("points", "fraction_bp", "price", "want"),
    [
        (100, 100, Price(0, 0), ReleaseGrant(1, 1)),  # 1 % of 100 at the initial price
        (100, 100, Price(3, 2), ReleaseGrant(1, 1)),  # 1 point at 1.5 fen: 1 whole fen
        (100, 100, Price(1, 2), None),  # 1 point at 0.5 fen: worth less than a fen
        (99, 100, Price(0, 0), None),  # 1 % of 99 is no whole point
        (200, 100, Price(5, 2), ReleaseGrant(2, 5)),  # 2 points at 2.5 fen
        (1000, 250, Price(0, 0), ReleaseGrant(25, 25)),
    ],
)
def test_release_grant_edges(points: int, fraction_bp: int, price: Price, want: object) -> None:
    assert release_grant(points, fraction_bp, price) == want


def test_points_for_whole_fen() -> None:
    """Without a denominator the argument is plain fen."""
    assert Price(0, 0).points_for(7) == 7
    assert Price(300, 200).points_for(30) == 20  # 1.5 fen a point
    assert Price(300, 200).points_for(31) == 20  # floor: no fraction of a point


def test_a_shard_moves_by_every_posting_to_its_accounts() -> None:
    """An entry may post to the pool, issuance or concessions more than once (a batch of
    expiries and a grant together): the shard's slices move by the sum, issuance and concessions
    counted as what left them."""
    postings = [
        ("pool", "fen", 5),
        ("pool", "fen", 7),
        ("issuance", "pt", -3),
        ("issuance", "pt", -4),
        ("concessions", "fen", -12),
        ("member:1:points", "pt", 7),
    ]
    assert shard_delta(postings) == ShardDelta(pool_fen=12, issued_points=7, concessions_fen=12)


def test_an_unbalanced_entry_is_never_posted() -> None:
    """DESIGN.md "Journal": amounts sum to zero per unit; an entry that does not is a bug in the
    caller, refused before it is written, naming each unit and by how much it is off."""
    check_balanced([("member:1:points", "pt", 5), ("issuance", "pt", -5), ("pool", "fen", 0)])
    with pytest.raises(AssertionError, match=r"unbalanced journal entry: \{'pt': 1\}"):
        check_balanced([("member:1:points", "pt", 5), ("issuance", "pt", -4)])
    with pytest.raises(AssertionError, match=r"\{'fen': -3\}"):
        check_balanced([("pool", "fen", -3), ("member:1:points", "pt", 0)])
