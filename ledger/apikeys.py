"""API keys by role. Only hashes are stored; the key is shown once, when it is created."""

from __future__ import annotations

import time

from sqlalchemy import bindparam, select

from ledger import codes
from ledger.context import Ctx
from ledger.db import Statement
from ledger.errors import Unauthorized
from ledger.principal import Principal, RoleName
from ledger.schema import ApiKey

_CACHE_SECONDS = 30.0
_keys = ApiKey.metadata.tables[ApiKey.__tablename__]
# A key not seen for a while (a quiet till) costs one indexed read, not an ORM session.
_LOOKUP = Statement(
    select(_keys.c.role, _keys.c.merchant_id, _keys.c.id).where(
        _keys.c.key_hash == bindparam("digest"), _keys.c.revoked_at.is_(None)
    )
)


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


class KeyRing:
    """Authenticates bearer keys, remembering answers briefly so a request costs no extra read."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise Unauthorized("missing API key")
        digest = codes.api_key_hash(key)
        hit = self._cache.get(digest)
        if hit is None or hit[0] < time.monotonic():
            row = await self.ctx.db.run_direct(
                lambda conn: _LOOKUP.first(conn, digest=digest), readonly=True
            )
            principal = (
                Principal(row[0], merchant_id=row[1], key_id=row[2]) if row is not None else None
            )
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = (time.monotonic() + _CACHE_SECONDS, principal)
            self._cache[digest] = hit
        if hit[1] is None:
            raise Unauthorized("unknown or revoked API key")
        return hit[1]
