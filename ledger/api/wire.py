"""What the ledger accepts on the wire before any model sees it: one check at the edge for every
string, number, body and id, whichever operation it is meant for (issue 14).

Each rule refuses a whole kind of input, never one value:

- text either database cannot store (NUL, which PostgreSQL refuses in ``text``; lone surrogates,
  which neither can encode as UTF-8) — in body strings and keys, query names and values;
- numbers longer than any field allows (Python's int-string limit would otherwise trip first);
- JSON that means two things (a key given twice: which ``amount_fen`` was meant?), JSON that is
  not an object, and JSON nested deeper than any request could be;
- path ids that are not plain ASCII digits in ``1..MAX_ID``.

Errors raised: :class:`InvalidRequest` (400) or :class:`NotFound` (404, path ids).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ledger.errors import InvalidRequest, NotFound

MAX_ID = 2**62
MAX_DIGITS = 24  # the longest integer any field takes (2^62 has 19 digits) plus some slack
MAX_DEPTH = 8  # deeper than any request model nests (staff identity inside a redemption: 2)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_text(value: str, where: str) -> str:
    """``value`` unchanged, or InvalidRequest if a database could not store it as text."""
    if _UNSTORABLE.search(value):
        raise InvalidRequest(f"{where}: text may not contain NUL or unpaired surrogates")
    return value


def path_id(name: str, raw: str) -> int:
    """A path id; anything that is not one (too long, signed, non-ASCII digits) is a 404."""
    if len(raw) > MAX_DIGITS or not (raw.isascii() and raw.isdigit()) or not (
        1 <= int(raw) <= MAX_ID
    ):
        raise NotFound(f"no such {name.removesuffix('_id')}", **{name: raw[:40]})
    return int(raw)


def check_query(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The query as a dict; a name given twice is ambiguous, so refused rather than guessed."""
    seen: dict[str, str] = {}
    for name, value in items:
        check_text(name, "query")
        check_text(value, f"query {name[:40]}")
        if name in seen:
            raise InvalidRequest(f"query {name[:40]}: given more than once")
        seen[name] = value
    return seen


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        check_text(key, "body")
        if key in out:
            raise InvalidRequest(f"body {key[:40]}: given more than once")
        if isinstance(value, str):
            check_text(value, f"body {key[:40]}")
        out[key] = value
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise InvalidRequest("body: a number is longer than any field allows")
    return int(text)


def _constant(name: str) -> Any:
    raise InvalidRequest(f"body: {name} is not JSON")


def _depth_and_strings(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise InvalidRequest("body: nested deeper than any request")
    if isinstance(value, str):
        check_text(value, "body")
    elif isinstance(value, list):
        for item in value:
            _depth_and_strings(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _depth_and_strings(item, depth + 1)


def check_body(body: bytes) -> None:
    """Refuse a body that is not one unambiguous JSON object of storable text (see module doc).

    The model then parses the same bytes itself (its strict JSON mode), so this only refuses.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("body: not UTF-8") from None
    # Cheap bound before parsing: nesting is what makes a small body expensive to recurse into.
    if text.count("[") + text.count("{") > 4096:
        raise InvalidRequest("body: too many nested values")
    try:
        value = json.loads(
            text, object_pairs_hook=_pairs, parse_int=_int, parse_constant=_constant
        )
    except RecursionError:
        raise InvalidRequest("body: nested deeper than any request") from None
    except ValueError as exc:
        raise InvalidRequest(f"body: not JSON ({exc.args[0][:80] if exc.args else ''})") from None
    if not isinstance(value, dict):
        raise InvalidRequest("body: must be a JSON object")
    _depth_and_strings(value)
