"""Keyed writes happen once; every retry with the same key gets the first answer back.

The key is claimed first thing in the transaction. On PostgreSQL a concurrent claim of the same
key waits for the first transaction and then sees its row, so a double tap can never run the
work twice, and the retry is answered from the stored response rather than with "already used".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.db import insert_on_conflict
from ledger.errors import IdempotencyConflict
from ledger.schema import IdempotencyRecord


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    scope: str
    key: str
    replay: dict[str, Any] | None  # the stored answer when this key was seen before


async def claim(
    session: AsyncSession, scope: str, key: str, fingerprint: str, now: dt.datetime
) -> Claim:
    stmt = (
        insert_on_conflict(session, IdempotencyRecord)
        .values(scope=scope, key=key, request_hash=fingerprint, response={}, created_at=now)
        .on_conflict_do_nothing()
    )
    result = await session.execute(stmt)
    if getattr(result, "rowcount", 0) == 1:
        return Claim(scope, key, None)
    row = (
        await session.execute(
            select(IdempotencyRecord.request_hash, IdempotencyRecord.response).where(
                IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
            )
        )
    ).one()
    if row.request_hash != fingerprint:
        raise IdempotencyConflict(
            "this idempotency key was already used for a different request", key=key
        )
    return Claim(scope, key, dict(row.response))


async def complete(session: AsyncSession, claimed: Claim, response: dict[str, Any]) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.scope == claimed.scope, IdempotencyRecord.key == claimed.key)
        .values(response=response)
    )
