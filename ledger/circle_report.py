"""``greenpoints ledger circle-report communities.csv``: the 15-minute circle of many places.

Input: a CSV with a header naming ``name``, ``lat`` and ``lon`` (degrees; other columns are
ignored). A row that cannot be read is skipped and reported with its line number, never the
whole run. Output: one CSV row per community (how many needs of each group are met, the gaps,
then each need's nearest merchant and walking distance in metres), or the same as text.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from ledger import circle
from ledger.context import Ctx
from ledger.models import CircleOut


@dataclass(frozen=True)
class Community:
    line: int
    name: str
    lat: float
    lon: float


def read_communities(f: IO[str], skipped: list[tuple[int, str]]) -> Iterator[Community]:
    """The readable rows of ``f``; unreadable ones are appended to ``skipped`` as (line, why).

    Raises ValueError when the header lacks a column.
    """
    reader = csv.DictReader(f)
    missing = {"name", "lat", "lon"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"the header lacks {', '.join(sorted(missing))}")
    for row in reader:
        line = reader.line_num
        try:
            lat, lon = float(row["lat"] or ""), float(row["lon"] or "")
        except ValueError:
            skipped.append((line, "lat/lon are not numbers"))
            continue
        if not (math.isfinite(lat + lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            skipped.append((line, "lat/lon out of range"))
            continue
        yield Community(line, (row["name"] or "").strip() or f"line {line}", lat, lon)


async def reports(
    ctx: Ctx,
    communities: Iterable[Community],
    rules: circle.CircleRules,
    progress: Callable[[int], object] = lambda _n: None,
) -> list[tuple[Community, CircleOut]]:
    out = []
    for c in communities:
        out.append((c, await circle.circle(ctx, c.lat, c.lon, rules)))
        progress(1)
    return out


def write_csv(
    f: IO[str], rows: list[tuple[Community, CircleOut]], rules: circle.CircleRules
) -> None:
    needs = [(g, k) for g, group in rules.needs.items() for k in group]
    groups = list(rules.needs)
    writer = csv.writer(f)
    writer.writerow(
        ["community", "lat", "lon"]
        + [f"{g}_{x}" for g in groups for x in ("met", "total")]
        + ["gaps"]
        + [f"{k}_{x}" for _g, k in needs for x in ("nearest", "walk_m")]
    )
    for c, report in rows:
        by_key = {cat.key: cat for cat in report.categories}
        counts = []
        for g in groups:
            in_group = [cat for cat in report.categories if cat.group == g]
            counts += [sum(cat.nearest is not None for cat in in_group), len(in_group)]
        nearest: list[object] = []
        for _g, k in needs:
            found = by_key[k].nearest
            nearest += [found.name, found.walk_m] if found else ["", ""]
        writer.writerow([c.name, c.lat, c.lon, *counts, ";".join(report.gaps), *nearest])


def write_text(f: IO[str], rows: list[tuple[Community, CircleOut]]) -> None:
    for c, report in rows:
        f.write(f"{c.name} ({c.lat:.6f}, {c.lon:.6f}), walk {report.walk_m} m\n")
        for cat in report.categories:
            if cat.nearest:
                n = cat.nearest
                f.write(
                    f"  [{cat.group}] {cat.key}: {n.name} ({n.category}), {n.walk_m} m, "
                    f"{n.walk_minutes} min; {cat.count} within the walk\n"
                )
            else:
                f.write(f"  [{cat.group}] {cat.key}: GAP\n")
        f.write(f"  gaps: {', '.join(report.gaps) or 'none'}\n\n")
