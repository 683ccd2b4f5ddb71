"""The bot's log lines: one per event, JSON when asked, tied to the update, free of secrets.

Every line emitted while the application handles an update carries that update's id
(``update_id``, set by the middleware through ``begin_update``), and the ledger calls made for it
carry the request ids ``tg-<update_id>-<n>`` (``ledger_client.tracing``), which the ledger puts on
its own lines: an operator can go from a complaint to the update, and from the update to the
ledger's side of it.

The field names are the ledger's (``ledger/observability.py``: ``time``, ``level``, ``logger``,
``message``), so both services' lines sit in one index; the formatter set-up is mirrored here
rather than imported because the bot may not import the ledger package (DESIGN.md's layering).

Nothing that grants anything may reach a log: a redemption code (20 digits, however grouped, or its
``r…`` deep-link form), a staff invite (``s…``), the bot token (Bot API URLs carry it), the
ledger API key, the webhook secret, or a phone number. python-telegram-bot logs whole updates and
Bot API calls at DEBUG, SQLAlchemy logs statement parameters (a pending redemption's code is in
the flows table) and exceptions quote what they choke on, so ``Redactor`` runs on the handler —
over every logger's records, message, arguments, extra fields and traceback alike — rather than
trusting each call site.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from ledger_client import tracing

update_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("update_id", default=None)

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def begin_update(update: int) -> None:
    """Mark the current context as handling ``update``: log lines and ledger calls say so.

    python-telegram-bot handles each update in a task of its own, so this lasts exactly as long
    as the update's handling (and whatever tasks it starts, which were caused by it).
    """
    update_id.set(update)
    tracing.begin(f"tg-{update}")


class UpdateIdFilter(logging.Filter):
    """Puts the id of the update being handled (or None) on every record as ``update_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "update_id"):
            record.update_id = update_id.get()
        return True


# --- redaction -----------------------------------------------------------------------------

_B64 = "A-Za-z0-9_-"
# How people group a code's digits (bot/media/scan.py reads these).
_SEPARATOR = "[ \t\\-\u2013\u2014]"

Replacement = str | Callable[[re.Match[str]], str]


def _keep_digits(match: re.Match[str]) -> str:
    """A code's first four digits and an ellipsis, as the ledger masks codes in its logs."""
    digits = [c for c in match.group(0) if c.isdigit()]
    return "".join(digits[:4]) + "…"


def _token_like(match: re.Match[str]) -> str:
    """An ``r``+12 or ``s``+22 base64url word is a link code or an invite when it looks random
    (an upper-case letter or a digit in it); plain words of that shape stay readable."""
    word = match.group(0)
    body = word[1:]
    if any(c.isdigit() or c.isupper() for c in body):
        return word[0] + "…"
    return word


_PATTERNS: list[tuple[re.Pattern[str], Replacement]] = [
    # Bot API URLs carry the token: https://api.telegram.org/bot<token>/sendMessage
    (re.compile(r"/bot\d+:[^/\s'\"?#]+"), "/bot[token]"),
    # A bot token on its own: <bot id>:<35 characters>.
    (re.compile(rf"(?<![\w.])\d{{5,}}:[{_B64}]{{20,}}"), "[token]"),
    # Ledger API keys (gp_<role>_<secret>) and bearer credentials.
    (re.compile(rf"\b(gp_[a-z]+_)[{_B64}]{{8,}}"), r"\1…"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\",]+"), r"\1…"),
    # Passwords in database and service URLs.
    (re.compile(r"(://[^:/@\s'\"]+:)[^@\s'\"]+@"), r"\1…@"),
    # Phone numbers: named as such (Telegram's contact messages) …
    (re.compile(r"(?i)(phone(?:_number)?['\"]?\s*[:=]\s*['\"]?)[^'\",)}\s]+"), r"\1…"),
    # … in international form, or Chinese mobile numbers.
    (re.compile(r"(?<![\w+])\+\d(?:[ \-]?\d){6,14}(?!\d)"), "[phone]"),
    (re.compile(r"(?<![\d])(?:86[ \-]?)?1[3-9]\d{9}(?!\d)"), "[phone]"),
    # Redemption codes: 20 digits, grouped any way people type them.
    (re.compile(rf"(?<!\d)\d(?:{_SEPARATOR}?\d){{19}}(?!\d)"), _keep_digits),
    # Link codes and invites wherever a payload is named: start=…, /start …, "code": "…".
    (
        re.compile(
            rf"(?i)((?:start|code|invite|payload)['\"]?(?:\s*[:=]\s*|%3D|\s+)['\"]?)"
            rf"([rs])[{_B64}]{{12,22}}(?![{_B64}])"
        ),
        r"\1\2…",
    ),
    # … and anywhere else they look random.
    (re.compile(rf"(?<![{_B64}])(?:r[{_B64}]{{12}}|s[{_B64}]{{22}})(?![{_B64}])"), _token_like),
]

# Attributes every LogRecord has; anything else on a record came from ``extra=`` or a filter.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class Redactor(logging.Filter):
    """Rewrites each record so that no secret survives into any handler's output.

    Installed on the handler (not a logger), so it sees every logger's records: library loggers
    propagate to the root's handlers without passing the root logger's own filters. The record
    is changed in place — message rendered and redacted, arguments dropped, traceback rendered
    and redacted — so handlers after this one get the clean version too.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str | None) -> None:
        """Redact this exact string wherever it appears (the token, keys, the webhook secret)."""
        if secret and len(secret) >= 6 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)  # a longer secret containing a shorter one

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[secret]")
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(v) for v in value]
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):
            record.msg = self._value(record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # a malformed call: keep what can be shown, redacted
                message = f"{record.msg!r} % {record.args!r}"
            record.msg = self.redact(message)
            record.args = None
        if record.exc_info:
            record.exc_text = self.redact(_FORMATTER.formatException(record.exc_info))
            record.exc_info = None  # formatters would render the raw exception again
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str | dict | list | tuple):
                setattr(record, key, self._value(value))
        return True


_FORMATTER = logging.Formatter()


# --- set-up --------------------------------------------------------------------------------


class _TextFormatter(logging.Formatter):
    """The ledger's text line with the update in brackets: ``… [u42] message`` or ``[-]``."""

    def format(self, record: logging.LogRecord) -> str:
        uid = getattr(record, "update_id", None)
        record.update_tag = f"u{uid}" if uid is not None else "-"
        return super().format(record)


def formatter(json_lines: bool) -> logging.Formatter:
    if json_lines:
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(update_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return _TextFormatter("%(asctime)s %(levelname)s %(name)s [%(update_tag)s] %(message)s")


def configure_logging(
    level: int | str = logging.INFO,
    *,
    json_lines: bool = False,
    secrets: Iterable[str | None] = (),
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every logger's records, redacted and tagged with the update, to one stream handler.

    Replaces the root logger's handlers (as the ledger's ``configure_logging`` does) and returns
    the new handler; ``secrets`` are exact strings to redact besides the built-in patterns.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(UpdateIdFilter())
    handler.addFilter(Redactor(secrets))
    handler.setFormatter(formatter(json_lines))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler
