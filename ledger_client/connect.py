"""Pick the transport from the ledger URL: ``http(s)://`` is a service, anything else a database."""

from __future__ import annotations

from ledger_client.base import LedgerClient


async def connect(url: str, api_key: str | None = None, role: str = "bot") -> LedgerClient:
    if url.startswith(("http://", "https://")):
        if not api_key:
            raise ValueError("an http(s) ledger URL needs an API key")
        from ledger_client.http import HttpLedgerClient

        return HttpLedgerClient(url, api_key)
    from ledger_client.inprocess import InProcessLedgerClient

    return await InProcessLedgerClient.open(url, role)
