"""Choice data: short, versioned strings, checked strictly on the way back in.

A platform returns whatever a choice carried (a Telegram button's callback data, a WeChat menu
link's id), so data from a stale message or a forged client is parsed strictly; anything that
does not parse is answered as an expired choice. 64 UTF-8 bytes at most (Telegram's callback
limit; WeChat menu ids are the same, WECHAT.md rule 7).
"""

from __future__ import annotations

import re

SEP = "|"
_PART = re.compile(r"^[A-Za-z0-9_.:\-*]{0,40}$")
MAX_BYTES = 64


def pack(kind: str, *parts: object) -> str:
    """``kind|part|part``; raises ValueError past ``MAX_BYTES``."""
    text = SEP.join([kind, *(str(p) for p in parts)])
    if len(text.encode()) > MAX_BYTES:
        raise ValueError(f"choice data too long: {text!r}")
    return text


def kind_of(data: str | None) -> str | None:
    """The kind a choice's data names (the part before the first ``|``)."""
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    return data.split(SEP, 1)[0]


def unpack(data: str | None, kind: str, arity: int) -> list[str] | None:
    """The parts after ``kind``, or None when ``data`` is not a well-formed ``kind`` choice."""
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    parts = data.split(SEP)
    if parts[0] != kind or len(parts) != arity + 1:
        return None
    if not all(_PART.match(p) for p in parts[1:]):
        return None
    return parts[1:]


def as_int(text: str, low: int, high: int) -> int | None:
    """``text`` as an integer in ``[low, high]``, or None."""
    if not re.fullmatch(r"-?\d{1,19}", text):
        return None
    value = int(text)
    return value if low <= value <= high else None
