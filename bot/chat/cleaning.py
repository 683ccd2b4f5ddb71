"""Text one person supplied, made safe for another person to read (issue 9).

Names (a customer's shown to a cashier), merchant names and addresses, and announcement texts are
typed by someone other than the reader. Control characters (Cc) garble a line or break storage
(PostgreSQL refuses NUL); format characters (Cf) include the bidi overrides and isolates
(U+202A–U+202E, U+2066–U+2069) and marks (U+200E/F) that make "Code of customer ‮** at <shop>"
render the shop and the time reversed. Both go, and so do lone surrogates (Cs); private-use
characters stay (visible glyphs on some fonts, harmless to direction). ZWJ (U+200D) is kept
only between two pictographs, where it joins an emoji sequence.
"""

from __future__ import annotations

import unicodedata

_DROP = {"Cc", "Cf", "Cs"}
_ZWJ = "\u200d"
_KEEP_CF = {_ZWJ, "\ufe0f"}  # joiners inside emoji sequences (U+FE0F is Mn, listed for clarity)


def _is_pictographic(ch: str) -> bool:
    return ord(ch) >= 0x1F000 or unicodedata.category(ch) == "So"


def clean_text(text: str, *, single_line: bool = False) -> str:
    """``text`` without control, format and surrogate characters.

    Newlines and tabs survive unless ``single_line`` (then every run of whitespace, newlines
    included, becomes one space and the ends are trimmed). A ZWJ survives only between two
    pictographs (👩‍💻).
    """
    out: list[str] = []
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if ch in "\n\t" and not single_line:
            out.append(ch)
            continue
        if category in _DROP:
            if (
                ch in _KEEP_CF
                and 0 < i < len(text) - 1
                and _is_pictographic(text[i - 1])
                and _is_pictographic(text[i + 1])
            ):
                out.append(ch)
                continue
            if single_line and category == "Cc":
                out.append(" ")
            continue
        out.append(ch)
    cleaned = "".join(out)
    if single_line:
        return " ".join(cleaned.split())
    return cleaned


def clean_name(name: str | None, limit: int = 64) -> str | None:
    """A display name fit to store and show others: one line, cleaned, at most ``limit``
    characters; None when nothing visible is left."""
    if not name:
        return None
    cleaned = clean_text(name, single_line=True)[:limit].rstrip()
    return cleaned or None


def first_visible(text: str) -> int:
    """Index of the first character that shows as a letter, digit, mark-free symbol or
    punctuation (not a space, control or format character); ``len(text)`` when none."""
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category[0] in {"L", "N", "S", "P"}:
            return i
    return len(text)


def mask_name(name: str | None, stars: int = 2) -> str:
    """A name as a stranger may see it: its first visible letter and ``*`` (``王**``), after
    cleaning, so an override or a space cannot be that first letter. ``*`` alone for none."""
    cleaned = clean_name(name) or ""
    index = first_visible(cleaned)
    if index >= len(cleaned):
        return "*" * stars
    return cleaned[index] + "*" * stars
