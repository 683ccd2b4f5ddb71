"""API keys by role. Only hashes are stored; the key is shown once, when it is created.

Authentication (issue 14, issue 11):

- Known keys only are cached, in a bounded least-recently-used map, so any number of forged
  keys cannot push a real one out: an unknown key is one indexed database miss, never cached.
- Failures are counted per client address; past ``FAILURES_PER_MINUTE`` in a minute that
  address is refused with 429 until the minute is over, before any hashing or database read.
- Revocation is immediate in every ledger process: each revocation adds a ``key_revocations``
  row, and before trusting a cached key a request reads that table's highest id (one index
  lookup; concurrent requests share one read that began after they arrived). A cached entry
  from an older generation is looked up again, so a key revoked anywhere is refused by every
  process on the next request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, update

from ledger import codes
from ledger.context import Ctx
from ledger.db import Statement
from ledger.errors import NotFound, Throttled, Unauthorized
from ledger.principal import Principal, RoleName
from ledger.schema import ApiKey, KeyRevocation

KNOWN_KEYS = 10_000  # live keys remembered per process (a till system's key each, at most)
FAILURES_PER_MINUTE = 100  # unknown or missing keys one address may send per minute
ADDRESSES = 10_000  # addresses whose failures are counted at once (the oldest are forgotten)

_keys = ApiKey.metadata.tables[ApiKey.__tablename__]
_revocations = KeyRevocation.metadata.tables[KeyRevocation.__tablename__]
# A key not seen for a while (a quiet till) costs one indexed read, not an ORM session.
_LOOKUP = Statement(
    select(_keys.c.role, _keys.c.merchant_id, _keys.c.id).where(
        _keys.c.key_hash == bindparam("digest"), _keys.c.revoked_at.is_(None)
    )
)
_GENERATION = Statement(select(func.coalesce(func.max(_revocations.c.id), 0)))


async def create(ctx: Ctx, role: RoleName, merchant_id: int | None, label: str = "") -> str:
    if role == "merchant" and merchant_id is None:
        raise ValueError("a merchant key needs --merchant")
    if role != "merchant" and merchant_id is not None:
        raise ValueError("only merchant keys belong to a merchant")
    key = codes.new_api_key(role)
    async with ctx.db.write() as session:
        if merchant_id is not None:
            from ledger import merchants

            await merchants.load(session, merchant_id)
        session.add(
            ApiKey(
                key_hash=codes.api_key_hash(key),
                prefix=key[:12],
                role=role,
                merchant_id=merchant_id,
                label=label,
                created_at=ctx.now(),
            )
        )
    return key


@dataclass(frozen=True)
class Revoked:
    """The answer to a revocation: which key, and since when (naive UTC)."""

    key_id: int
    revoked_at: dt.datetime
    already: bool


async def revoke(ctx: Ctx, key_id: int) -> Revoked:
    """Revoke key ``key_id`` for every ledger process at once. Revoking twice changes nothing
    and answers the first revocation's time. Raises NotFound for an id that was never a key."""
    now = ctx.now()
    async with ctx.db.write() as session:
        done = await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        if getattr(done, "rowcount", 0) == 1:
            await session.execute(insert(KeyRevocation).values(key_id=key_id, revoked_at=now))
            return Revoked(key_id, now, already=False)
        when = await session.scalar(select(ApiKey.revoked_at).where(ApiKey.id == key_id))
    if when is None:
        raise NotFound("no such API key", key_id=key_id)
    return Revoked(key_id, when, already=True)


async def key_id(ctx: Ctx, key: str) -> int:
    """The id of ``key`` (live or revoked); NotFound when it never was a key."""
    async with ctx.db.read() as session:
        found = await session.scalar(
            select(ApiKey.id).where(ApiKey.key_hash == codes.api_key_hash(key))
        )
    if found is None:
        raise NotFound("no such API key")
    return found


class KeyRing:
    """Authenticates bearer keys for one ledger process (see the module docstring)."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.failures_per_minute = FAILURES_PER_MINUTE
        self._known: OrderedDict[str, tuple[int, Principal]] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._reading: asyncio.Future[int] | None = None
        self.generation_reads = 0  # how many times the revocation generation was read
        self.lookups = 0  # how many times a key was looked up in the database

    async def authenticate(self, key: str | None, address: str | None = None) -> Principal:
        """The principal behind ``key``. Raises Unauthorized (401) for a missing, unknown or
        revoked key, Throttled (429, ``retry_after`` seconds) for an address past its failures."""
        where = address or "-"
        self._check_address(where)
        if not key:
            self._failed(where)
            raise Unauthorized("missing API key")
        digest = codes.api_key_hash(key)
        generation = await self._generation()
        hit = self._known.get(digest)
        if hit is not None and hit[0] == generation:
            self._known.move_to_end(digest)
            return hit[1]
        self.lookups += 1
        row = await self.ctx.db.run_direct(
            lambda conn: _LOOKUP.first(conn, digest=digest), readonly=True
        )
        if row is None:
            self._known.pop(digest, None)
            self._failed(where)
            raise Unauthorized("unknown or revoked API key")
        principal = Principal(row[0], merchant_id=row[1], key_id=row[2])
        # Stamped with the generation read before the lookup: if a revocation landed in
        # between, the next request sees a newer generation and looks the key up again.
        self._known[digest] = (generation, principal)
        self._known.move_to_end(digest)
        while len(self._known) > KNOWN_KEYS:
            self._known.popitem(last=False)
        return principal

    def _check_address(self, address: str) -> None:
        seen = self._failures.get(address)
        if seen is None:
            return
        started, count = seen
        left = started + 60.0 - time.monotonic()
        if left <= 0:
            del self._failures[address]
        elif count >= self.failures_per_minute:
            raise Throttled(
                "too many requests with unknown API keys; wait", retry_after=max(1, int(left))
            )

    def _failed(self, address: str) -> None:
        now = time.monotonic()
        started, count = self._failures.pop(address, (now, 0))
        self._failures[address] = (started, count + 1)
        while len(self._failures) > ADDRESSES:
            self._failures.popitem(last=False)

    async def _generation(self) -> int:
        """The revocation generation as of a read that began after this call: a read already
        under way may predate a revocation, so it is waited out and the next one shared."""
        earlier = self._reading
        if earlier is not None:
            await asyncio.wait([earlier])
        reading = self._reading
        if reading is None or reading is earlier:
            reading = self._reading = asyncio.ensure_future(self._read_generation())
            reading.add_done_callback(self._read_done)
        return await asyncio.shield(reading)

    async def _read_generation(self) -> int:
        self.generation_reads += 1
        row = await self.ctx.db.run_direct(lambda conn: _GENERATION.first(conn), readonly=True)
        return int(row[0]) if row is not None else 0

    def _read_done(self, future: asyncio.Future[int]) -> None:
        if self._reading is future:
            self._reading = None
        if not future.cancelled():
            future.exception()  # retrieved here; every waiter gets it from its own await
