"""The id that ties a ledger request to what caused it (for the bot: the Telegram update).

The caller starts a trace for the work it is doing (``begin("tg-42")`` while handling update 42);
the HTTP client sends each call's id as ``X-Request-Id`` — the trace and the call's number within
it, ``tg-42-1``, ``tg-42-2`` — and the ledger puts that id on its log lines, so an operator holding
one side's line can find the other's. Work outside any trace gets a fresh random id per call.
"""

from __future__ import annotations

import contextvars
import itertools
import secrets

trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
# The call counter of the current trace. A mutable counter rather than a number in the context,
# so tasks started from the same update (which copy the context) still never reuse an id.
_calls: contextvars.ContextVar[itertools.count[int] | None] = contextvars.ContextVar(
    "trace_calls", default=None
)
_orphan_calls = itertools.count(1)  # a trace set on ``trace_id`` directly, without ``begin``


def begin(base: str) -> None:
    """Start a trace in the current context: the next ledger calls are ``<base>-1``, ``-2``…"""
    trace_id.set(base)
    _calls.set(itertools.count(1))


def end() -> None:
    """Leave the current trace: later calls in this context get random ids again."""
    trace_id.set(None)
    _calls.set(None)


def next_request_id() -> str:
    """The id for the next ledger call: ``<trace>-<n>`` inside a trace, random outside one."""
    base = trace_id.get()
    if base is None:
        return secrets.token_hex(8)
    calls = _calls.get()
    return f"{base}-{next(calls if calls is not None else _orphan_calls)}"
