"""Measure, shorten and split text within a platform's limit, in characters or UTF-8 bytes.

Pure functions, no platform knowledge: a channel passes its ``Capabilities.text_limit`` and
``text_unit``. Two rules hold for every result: it fits (``measure(part, unit) <= limit``) and
no cut falls inside a character or a grapheme (a surrogate pair, a letter and its combining
marks, an emoji with its skin tone, variation selector or ZWJ sequence, a flag's two regional
indicators), so nothing the platform receives is malformed or garbled.

``chars`` is measured in UTF-16 code units, as Telegram counts its 4,096 (an emoji outside the
BMP counts two); ``utf8_bytes`` as WeChat counts its 2,048 (a Chinese character counts three).
"""

from __future__ import annotations

import unicodedata
from typing import Literal

Unit = Literal["chars", "utf8_bytes"]
ELLIPSIS = "…"

_ZWJ = "\u200d"


def measure(text: str, unit: Unit) -> int:
    """The length a platform counting in ``unit`` sees."""
    if unit == "utf8_bytes":
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _extends(ch: str) -> bool:
    """True when ``ch`` belongs to the grapheme before it (never cut just before it)."""
    if ch == _ZWJ:
        return True
    code = ord(ch)
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return True
    if 0x1F3FB <= code <= 0x1F3FF:  # emoji skin tones
        return True
    if 0xE0020 <= code <= 0xE007F:  # emoji tag sequences (subdivision flags)
        return True
    if 0xDC00 <= code <= 0xDFFF:  # a lone low surrogate in a str that came in unpaired
        return True
    return unicodedata.category(ch) in {"Mn", "Mc", "Me"}


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def boundary_at_or_before(text: str, index: int) -> int:
    """The largest grapheme boundary ``<= index`` (0 when the first grapheme spans it)."""
    i = max(0, min(index, len(text)))
    while 0 < i < len(text):
        if _extends(text[i]) or text[i - 1] == _ZWJ:
            i -= 1
            continue
        if _regional(text[i]) and _regional(text[i - 1]):
            run = 0
            j = i - 1
            while j >= 0 and _regional(text[j]):
                run += 1
                j -= 1
            if run % 2 == 1:  # text[i] is the second half of a flag
                i -= 1
                continue
        break
    return i


def _fit_prefix(text: str, budget: int, unit: Unit) -> int:
    """The longest prefix (by index, on a grapheme boundary) that measures ``<= budget``."""
    if budget <= 0:
        return 0
    lo, hi = 0, len(text)
    while lo < hi:  # largest i with measure(text[:i]) <= budget
        mid = (lo + hi + 1) // 2
        if measure(text[:mid], unit) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return boundary_at_or_before(text, lo)


def _fit_code_points(text: str, budget: int, unit: Unit) -> int:
    """The longest prefix (by index, on a code point boundary) that measures ``<= budget``."""
    i = 0
    while i < len(text) and measure(text[: i + 1], unit) <= budget:
        i += 1
    return i


def shorten(text: str, limit: int, unit: Unit = "chars", ellipsis: str = ELLIPSIS) -> str:
    """``text`` itself when it fits in ``limit``, else its longest whole-grapheme prefix that
    fits with ``ellipsis`` appended (trailing spaces dropped). Raises ValueError when ``limit``
    cannot hold even the ellipsis."""
    if measure(text, unit) <= limit:
        return text
    room = limit - measure(ellipsis, unit)
    if room < 0:
        raise ValueError(f"limit {limit} cannot hold the ellipsis")
    return text[: _fit_prefix(text, room, unit)].rstrip() + ellipsis


def _wrap_line(line: str, limit: int, unit: Unit) -> list[str]:
    """Cut one over-long line into pieces that fit, preferring the last space in each piece."""
    pieces: list[str] = []
    rest = line
    while measure(rest, unit) > limit:
        cut = _fit_prefix(rest, limit, unit)
        if cut == 0:
            # One grapheme longer than the limit (a letter under a pile of combining marks, or
            # ZWJ sequences): cutting it between code points garbles only that grapheme, where
            # refusing would lose the whole message.
            cut = _fit_code_points(rest, limit, unit)
        if cut == 0:
            raise ValueError(f"limit {limit} cannot hold one code point of {rest[:8]!r}")
        space = rest.rfind(" ", 0, cut + 1)
        if space > 0 and space >= cut // 2:
            cut = space
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip(" ")
    pieces.append(rest)
    return pieces


def split(
    text: str,
    limit: int,
    unit: Unit = "chars",
    long_lines: Literal["wrap", "shorten"] = "wrap",
) -> list[str]:
    """``text`` as consecutive parts that each fit in ``limit``, cut at line ends where possible.

    Lines are packed greedily; the newline between two parts is dropped (each part is its own
    message). A line longer than the limit on its own is wrapped at a space or grapheme
    boundary (``wrap``, nothing lost: announcements), or cut with an ellipsis (``shorten``:
    one list entry that must stay one line). Always at least one part; an empty text is
    ``[""]``. A grapheme longer than the limit on its own is cut between its code points.
    Raises ValueError only when ``limit`` is below one code point (4 UTF-8 bytes, 2 UTF-16
    units).
    """
    if measure(text, unit) <= limit:
        return [text]
    lines: list[str] = []
    for line in text.split("\n"):
        if measure(line, unit) <= limit:
            lines.append(line)
        elif long_lines == "shorten":
            lines.append(shorten(line, limit, unit))
        else:
            lines.extend(_wrap_line(line, limit, unit))
    parts: list[str] = []
    current: str | None = None
    newline = measure("\n", unit)
    size = 0
    for line in lines:
        length = measure(line, unit)
        if current is not None and size + newline + length <= limit:
            current += "\n" + line
            size += newline + length
            continue
        if current is not None:
            parts.append(current)
        current, size = line, length
    if current is not None:
        parts.append(current)
    return [p for p in parts if p.strip()] or [parts[0]]
