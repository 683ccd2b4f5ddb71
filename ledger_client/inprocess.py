"""The ledger client that runs the ledger in this process, on a database URL.

It sends the same JSON through the same operation table the HTTP server uses, so the embedded
default behaves exactly like a remote ledger, role checks included.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ledger.api.operations import invoke
from ledger.principal import Principal
from ledger.service import LedgerService
from ledger_client.base import LedgerClient

log = logging.getLogger(__name__)


class InProcessLedgerClient(LedgerClient):
    def __init__(self, service: LedgerService, principal: Principal, *, owns: bool = False):
        self.service = service
        self.principal = principal
        self._owns = owns

    @classmethod
    async def open(cls, url: str, role: str = "bot") -> InProcessLedgerClient:
        service = await LedgerService.open(url)
        return cls(service, Principal(role), owns=True)  # type: ignore[arg-type]

    def as_role(self, role: str, merchant_id: int | None = None) -> InProcessLedgerClient:
        """Another client on the same ledger acting with another role (tests, seeding)."""
        return InProcessLedgerClient(self.service, Principal(role, merchant_id))  # type: ignore[arg-type]

    async def close(self) -> None:
        if self._owns:
            await self.service.close()

    async def _call(
        self, op: str, path: dict[str, int], query: dict[str, str], body: dict[str, Any] | None
    ) -> tuple[int, Any]:
        raw = json.dumps(body).encode() if body is not None else None
        try:
            return await invoke(
                self.service, self.principal, op, {k: str(v) for k, v in path.items()}, query, raw
            )
        except Exception:  # what the HTTP server answers with a 500, so callers see one error
            log.exception("ledger operation %s failed", op)
            return 500, {"error": {"code": "internal", "message": "internal error"}}
