"""A purchase names its member by the member's code (issue 11, insider limits).

The code is the member's live redemption code, scanned or typed at the till, so a till key can
earn points only for a member who is there and shows their code — never for a member id it
guesses. A purchase spends the code (state ``spent``, in the purchase's transaction), as a
redemption uses it, so one code records one purchase; guesses are counted by the same throttle
as redemptions (``ledger.throttle``, in the service). A code in any state finds its member, so a
retry of a purchase whose code it already spent is answered from its idempotency key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from ledger import codes
from ledger.db import Conn, Statement
from ledger.errors import CodeExpired, CodeNotFound, CodeRevoked, CodeUsed
from ledger.schema import RedemptionCode

SPENT = "spent"  # the code's state once a purchase used it (a redemption's is "used")

_codes = RedemptionCode.metadata.tables[RedemptionCode.__tablename__]
_FIND = Statement(
    select(_codes.c.id, _codes.c.member_id, _codes.c.state, _codes.c.expires_at).where(
        _codes.c.code_hash == bindparam("code_hash")
    )
)
_SPEND = Statement(
    update(_codes)
    .where(_codes.c.id == bindparam("code_id"), _codes.c.state == "live")
    .values(state=SPENT, used_at=bindparam("now", type_=_codes.c.used_at.type))
    .returning(_codes.c.id)
)


@dataclass(frozen=True)
class Found:
    id: int
    member_id: int
    state: str
    expires_at: dt.datetime


def fingerprint(raw: str) -> str:
    """What of a code goes into a request's fingerprint: its hash, whatever form it came in."""
    secret = codes.parse_redemption_code(raw)
    return codes.redemption_hash(secret) if secret is not None else raw


def check_live(state: str, expires_at: dt.datetime, now: dt.datetime) -> None:
    """Raises CodeUsed, CodeExpired or CodeRevoked unless the code can be used at ``now``."""
    if state == "used":
        raise CodeUsed("this code was already redeemed")
    if state == SPENT:
        raise CodeUsed("this code was already used for a purchase")
    if expires_at <= now:
        raise CodeExpired("this code has expired")
    if state == "revoked":
        raise CodeRevoked("a newer code replaced this one")


async def find(conn: Conn, raw: str) -> Found:
    """The code ``raw`` names, in any state; CodeNotFound when none."""
    secret = codes.parse_redemption_code(raw)
    if secret is None:
        raise CodeNotFound("that is not a redemption code")
    row = await _FIND.first(conn, code_hash=codes.redemption_hash(secret))
    if row is None:
        raise CodeNotFound("no such redemption code")
    code_id, member_id, state, expires_at = row
    return Found(int(code_id), int(member_id), str(state), expires_at)


async def spend(conn: Conn, code: Found, now: dt.datetime) -> None:
    """Spend a live code for a purchase, once: of concurrent spends one wins, the others get
    CodeUsed (the conditional update), like a redemption's."""
    check_live(code.state, code.expires_at, now)
    if not await _SPEND.rows(conn, code_id=code.id, now=now):
        raise CodeUsed("this code was already used")
