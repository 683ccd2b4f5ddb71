"""Insider limits (issue 11; DESIGN.md "Merchants and their money"): the staff of a merchant
neither redeem their own code nor earn points on their own purchases there.

A member is an insider of a merchant when any of their chat identities is a live (unrevoked)
staff link to it — the same person, whichever account they show the code from.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ScalarSelect, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.errors import InsiderRefused
from ledger.schema import MemberIdentity, Staff

_staff = Staff.metadata.tables[Staff.__tablename__]
_identities = MemberIdentity.metadata.tables[MemberIdentity.__tablename__]


def insider_subquery() -> ScalarSelect[Any]:
    """How many live staff links of merchant ``:merchant_id`` belong to member ``:member_id``;
    a scalar subquery, to ride along a purchase's idempotency claim (no round trip of its own)."""
    # No join: SQLite's RETURNING drops table names, so every column here must be unambiguous
    # in its own SELECT (staff outside, member_identities inside).
    own_identities = select(_identities.c.channel, _identities.c.external_id).where(
        _identities.c.member_id == bindparam("member_id")
    )
    return (
        select(func.count())
        .select_from(_staff)
        .where(
            tuple_(_staff.c.channel, _staff.c.external_id).in_(own_identities),
            _staff.c.merchant_id == bindparam("merchant_id"),
            _staff.c.revoked_at.is_(None),
        )
        .scalar_subquery()
    )


def refuse_if(links: int, merchant_id: int) -> None:
    """Raises ``InsiderRefused`` when the member holds any of the merchant's staff links."""
    if links:
        raise InsiderRefused(
            "staff cannot redeem their own code or earn points at their own merchant",
            merchant_id=merchant_id,
        )


async def check(session: AsyncSession, member_id: int, merchant_id: int) -> None:
    """``refuse_if`` for a redemption: the member whose code it is, at ``merchant_id``."""
    links = await session.scalar(
        select(insider_subquery()), {"member_id": member_id, "merchant_id": merchant_id}
    )
    refuse_if(int(links or 0), merchant_id)
