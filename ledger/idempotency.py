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

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ledger.db import Statement, column_params, dialect_insert
from ledger.errors import IdempotencyConflict
from ledger.schema import IdempotencyRecord

_records = IdempotencyRecord.metadata.tables[IdempotencyRecord.__tablename__]
_CLAIM = Statement(
    lambda dialect: dialect_insert(dialect, _records)
    .values(column_params(_records, skip=()))
    .on_conflict_do_nothing()
    .returning(_records.c.scope)
)
_COMPLETE = Statement(
    update(_records)
    .where(_records.c.scope == bindparam("p_scope"), _records.c.key == bindparam("p_key"))
    .values(response=bindparam("p_response", type_=_records.c.response.type))
)


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
    claimed = await _CLAIM.rows(
        session,
        p_scope=scope,
        p_key=key,
        p_request_hash=fingerprint,
        p_response={},
        p_created_at=now,
    )
    if claimed:
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
    await _COMPLETE.rows(session, p_scope=claimed.scope, p_key=claimed.key, p_response=response)
