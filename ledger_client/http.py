"""The ledger client over HTTP: one aiohttp session, explicit timeouts, careful retries.

Only calls that cannot take effect twice are retried — reads, and writes that carry an
idempotency key or are idempotent by nature — and only on failures where the ledger may not
have answered (connection errors, timeouts, 502/503/504).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import aiohttp

from ledger_client.base import ROUTES, LedgerClient
from ledger_client.errors import Unavailable
from ledger_client.tracing import next_request_id

log = logging.getLogger(__name__)

RETRY_STATUSES = {502, 503, 504}


class HttpLedgerClient(LedgerClient):
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        total_timeout: float = 10.0,
        connect_timeout: float = 3.0,
        attempts: int = 3,
        backoff: float = 0.2,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._session = session
        self._owns_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
            )
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()

    async def _call(
        self, op: str, path: dict[str, int], query: dict[str, str], body: dict[str, Any] | None
    ) -> tuple[int, Any]:
        method, template, retry_safe = ROUTES[op]
        url = self.base_url + template.format(**path)
        attempts = self._attempts if retry_safe else 1
        data = json.dumps(body).encode() if body is not None else None
        headers = {"X-Request-Id": next_request_id()}
        if data is not None:
            headers["Content-Type"] = "application/json"
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._backoff * (3 ** (attempt - 1)) * random.uniform(0.8, 1.2))
            try:
                async with self._client().request(
                    method, url, params=query or None, data=data, headers=headers
                ) as response:
                    status = response.status
                    raw = await response.read()
                    csv = response.content_type == "text/csv"
                if status in RETRY_STATUSES and attempt + 1 < attempts:
                    last = Unavailable(f"ledger answered {status}", status)
                    continue
                if csv and status < 400:
                    return status, raw.decode("utf-8")
                try:
                    return status, json.loads(raw) if raw else {}
                except ValueError:
                    return status, {
                        "error": {
                            "code": "unavailable" if status >= 500 else "invalid_request",
                            "message": raw[:200].decode("utf-8", "replace"),
                        }
                    }
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = exc
                log.info(
                    "ledger %s %s failed (attempt %d, request %s): %r",
                    method,
                    template,
                    attempt + 1,
                    headers["X-Request-Id"],
                    exc,
                )
        raise Unavailable(f"ledger unreachable: {last!r}") from last
