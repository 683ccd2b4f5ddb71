"""Logs an operator can search and metrics Prometheus can scrape, for the ledger service.

Every log line carries the request id of the HTTP request it belongs to (``X-Request-Id``,
echoed to the caller), so one purchase can be followed from the bot's log into the ledger's.
"""

from __future__ import annotations

import contextvars
import logging
import os

from prometheus_client import Counter, Histogram
from pythonjsonlogger.json import JsonFormatter

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REQUESTS = Counter(
    "ledger_requests_total",
    "Ledger API requests by operation and HTTP status",
    ["operation", "status"],
)
LATENCY = Histogram(
    "ledger_request_seconds",
    "Ledger API request latency by operation",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure_logging(level: int = logging.INFO, json_lines: bool | None = None) -> None:
    """One line per event; JSON when asked for, or by the same switches as the bot's
    (``GREENPOINTS_LOG_FORMAT=json``, or the older ``GREENPOINTS_LOG_JSON=1``)."""
    if json_lines is None:
        json_lines = (
            os.environ.get("GREENPOINTS_LOG_FORMAT", "").lower() == "json"
            or os.environ.get("GREENPOINTS_LOG_JSON", "").lower() in {"1", "true", "yes"}
        )
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if json_lines:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
