"""The id that ties a ledger request to what caused it (for the bot: the Telegram update).

The caller sets ``trace_id`` for the work it is doing; the HTTP client sends it as
``X-Request-Id`` with a per-call suffix, so the ledger's log lines name the update they serve.
"""

from __future__ import annotations

import contextvars
import itertools
import secrets

trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
_calls = itertools.count(1)


def next_request_id() -> str:
    base = trace_id.get() or secrets.token_hex(6)
    return f"{base}.{next(_calls)}"
