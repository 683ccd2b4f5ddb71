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

from sqlalchemy import ColumnElement, bindparam, select, update

from ledger.db import Bound, Conn, Statement, column_params, dialect_insert
from ledger.errors import IdempotencyConflict
from ledger.schema import IdempotencyRecord

_records = IdempotencyRecord.metadata.tables[IdempotencyRecord.__tablename__]
_REPLAY = Statement(
    select(_records.c.request_hash, _records.c.response).where(
        _records.c.scope == bindparam("p_scope"), _records.c.key == bindparam("p_key")
    )
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
    also: tuple[Any, ...] = ()  # the claimer's extra columns, read by the claim itself


class Claimer:
    """Claims keys; ``also`` are scalar subqueries the claim statement returns alongside.

    A keyed write usually reads a few things right after claiming its key (a price, a
    merchant's terms); asking for them in the claim saves a round trip each. They are read only
    when the key is new, in the same snapshot as the claim.
    """

    def __init__(self, *also: ColumnElement[Any]) -> None:
        self._claim = Statement(
            lambda dialect: (
                dialect_insert(dialect, _records)
                .values(column_params(_records, skip=()))
                .on_conflict_do_nothing()
                .returning(_records.c.scope, *also)
            )
        )

    async def claim(
        self,
        session: Conn,
        scope: str,
        key: str,
        fingerprint: str,
        now: dt.datetime,
        **params: Any,
    ) -> Claim:
        """Claim ``key`` in ``scope``, first thing in the transaction; ``params`` feed ``also``."""
        claimed = await self._claim.rows(
            session,
            p_scope=scope,
            p_key=key,
            p_request_hash=fingerprint,
            p_response={},
            p_created_at=now,
            **params,
        )
        if claimed:
            return Claim(scope, key, None, tuple(claimed[0][1:]))
        stored_hash, response = await _REPLAY.one(session, p_scope=scope, p_key=key)
        if stored_hash != fingerprint:
            raise IdempotencyConflict(
                "this idempotency key was already used for a different request", key=key
            )
        return Claim(scope, key, dict(response))


_PLAIN = Claimer()


async def claim(session: Conn, scope: str, key: str, fingerprint: str, now: dt.datetime) -> Claim:
    return await _PLAIN.claim(session, scope, key, fingerprint, now)


async def answered(session: Conn, scope: str, key: str, fingerprint: str) -> dict[str, Any] | None:
    """The stored answer for a key already used for this very request, without claiming it.

    For callers that must refuse new work (a throttled actor) but still owe a retry its answer.
    """
    row = await _REPLAY.first(session, p_scope=scope, p_key=key)
    if row is None or row[0] != fingerprint or not row[1]:
        return None
    return dict(row[1])


async def complete(session: Conn, claimed: Claim, response: dict[str, Any]) -> None:
    await completion(claimed, response).rows(session)


def completion(claimed: Claim, response: dict[str, Any]) -> Bound:
    """``complete``, bound to run later in a ``db.batch`` with other statements."""
    return _COMPLETE.bind(p_scope=claimed.scope, p_key=claimed.key, p_response=response)
