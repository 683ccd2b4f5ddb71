"""Lay a list out over pages that each fit a channel's text limit, with a header and a footer.

For replies built from stored data (merchants near you, today's redemptions): the list's length
and its entries' length are not ours to choose, so each page is measured, and an entry too long
for a page on its own is shortened line by line rather than refused (issue 9: ten merchants with
200-character names and 300-character addresses made a 6,224-character /nearby list that
Telegram refused). Pure: the caller renders entries and decides which page to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.chat.splitting import Unit, measure, shorten


@dataclass(frozen=True, slots=True)
class Page:
    """One page: ``text`` fits the limit; ``first``/``count`` locate its entries in the input
    (0-based); ``number`` is 0-based and ``total`` the page count."""

    text: str
    first: int
    count: int
    number: int
    total: int


def _fit_entry(entry: str, room: int, unit: Unit) -> str:
    """An entry that fits ``room``: lines shortened evenly from the longest, then dropped from the
    end if a page still cannot hold it."""
    if measure(entry, unit) <= room:
        return entry
    lines = entry.split("\n")
    newline = measure("\n", unit)
    budget = room - newline * (len(lines) - 1)
    share = max(budget // len(lines), 0)
    # Lines shorter than their share keep their length and leave the rest to the long ones.
    short = [line for line in lines if measure(line, unit) <= share]
    long_count = len(lines) - len(short)
    if long_count:
        spare = budget - sum(measure(line, unit) for line in short)
        share = max(spare // long_count, 0)
    fitted = [
        line if measure(line, unit) <= share else shorten(line, share, unit) if share > 0 else ""
        for line in lines
    ]
    text = "\n".join(fitted)
    while measure(text, unit) > room and "\n" in text:
        text = text.rsplit("\n", 1)[0]
    return text if measure(text, unit) <= room else shorten(text, room, unit)


def paginate(
    entries: Sequence[str],
    limit: int,
    unit: Unit = "chars",
    header: str = "",
    footer: str = "",
    separator: str = "\n\n",
) -> list[Page]:
    """Entries packed in order onto as few pages as fit, each page
    ``header + separator.join(entries) + footer`` within ``limit``.

    ``header`` and ``footer`` repeat on every page (a footer such as "page 2/3" must be
    measured at its longest: pass the widest form). Raises ValueError when header and footer
    alone leave no room. No entries give one page holding only header and footer.
    """
    frame = measure(header, unit) + measure(footer, unit)
    room = limit - frame
    if room <= 0:
        raise ValueError(f"header and footer ({frame}) leave no room in {limit}")
    sep = measure(separator, unit)
    fitted = [_fit_entry(entry, room, unit) for entry in entries]
    groups: list[tuple[int, list[str]]] = []
    size = 0
    for index, entry in enumerate(fitted):
        length = measure(entry, unit)
        if groups and size + sep + length <= room:
            groups[-1][1].append(entry)
            size += sep + length
        else:
            groups.append((index, [entry]))
            size = length
    if not groups:
        groups.append((0, []))
    total = len(groups)
    return [
        Page(
            text=header + separator.join(items) + footer,
            first=first,
            count=len(items),
            number=number,
            total=total,
        )
        for number, (first, items) in enumerate(groups)
    ]
