"""Published journal heads read back from a copy someone kept: a file or a URL.

The copy is the public record as ``GET /v1/public/pool`` answers it (``{"days": [...]}``), a
single day of it, or a bare ``{"heads": [...]}``; every head in it becomes an anchor ``verify``
holds the journal to. A copy that cannot be read or understood is an error, never "nothing to
check": a verifier that silently checked nothing would pass a rewritten ledger.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Anchor:
    """One published head: entry ``seq`` of ``shard`` had ``hash``; ``label`` says whose."""

    shard: int
    seq: int
    hash: str
    label: str


@dataclass(frozen=True)
class PublishedRecord:
    """A day's record as published: its date, its hash (when the copy has one), its heads."""

    date: dt.date | None
    hash: str | None
    anchors: tuple[Anchor, ...]


def _heads(raw: Any, label: str) -> tuple[Anchor, ...]:
    if not isinstance(raw, list):
        raise ValueError(f"{label}: 'heads' is not a list")
    out = []
    for head in raw:
        if isinstance(head, dict):
            shard, seq, digest = head.get("shard"), head.get("seq"), head.get("hash")
        elif isinstance(head, list) and len(head) == 3:
            shard, seq, digest = head
        else:
            raise ValueError(f"{label}: a head is neither {{shard, seq, hash}} nor a triple")
        if not (
            isinstance(shard, int)
            and isinstance(seq, int)
            and isinstance(digest, str)
            and len(digest) == 64
        ):
            raise ValueError(f"{label}: head {head!r} is not (shard, seq, 64-hex hash)")
        out.append(Anchor(shard, seq, digest.lower(), label))
    return tuple(out)


def _record(raw: Any) -> PublishedRecord:
    if not isinstance(raw, dict) or "heads" not in raw:
        raise ValueError("a published day has no 'heads'")
    date = None
    if isinstance(raw.get("date"), str):
        try:
            date = dt.date.fromisoformat(raw["date"])
        except ValueError:
            raise ValueError(f"a published day has a bad date: {raw['date']!r}") from None
    label = f"the heads published for {date}" if date else "the published heads"
    digest = raw.get("hash") if isinstance(raw.get("hash"), str) else None
    return PublishedRecord(date, digest, _heads(raw["heads"], label))


def parse(document: Any) -> list[PublishedRecord]:
    """The records in a published document; ValueError when it holds no heads at all."""
    if isinstance(document, dict) and "days" in document:
        days = document["days"]
        if not isinstance(days, list):
            raise ValueError("'days' is not a list")
        records = [_record(day) for day in days]
    elif isinstance(document, list):
        records = [_record(day) for day in document]
    else:
        records = [_record(document)]
    if not any(r.anchors for r in records):
        raise ValueError("the published document holds no journal heads")
    return records


async def load(source: str) -> list[PublishedRecord]:
    """Read the published record from ``source``: an http(s) URL or a file path.

    Raises ValueError with the reason when it cannot be fetched, read or understood.
    """
    if source.startswith(("http://", "https://")):
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
                session.get(source) as response,
            ):
                if response.status != 200:
                    raise ValueError(f"{source} answered HTTP {response.status}")
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ValueError(f"cannot fetch {source}: {exc!r}") from None
    else:
        try:
            text = await asyncio.to_thread(Path(source).read_text, encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError(f"{source} is not JSON") from None
    return parse(document)
