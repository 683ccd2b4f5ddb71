"""A consistent copy of a live SQLite ledger, using SQLite's online backup.

The backup API copies every page in one step, under one read transaction: the ledger runs in
WAL mode, so writers keep going, and the copy is one point in time; ``greenpoints ledger
verify`` on the copy proves it. (Copied in several steps, a backup starts over whenever another
connection writes between two steps, so on a busy ledger of any size it would never finish.)
Restore is copying the file back while the ledger is stopped (README, Operations).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from ledger.db import Database


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".partial")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(tmp)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst, pages=-1)  # one step: see the module docstring
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    tmp.replace(target)


async def backup(db: Database, target: Path) -> None:
    if db.sqlite_path is None:
        raise ValueError("backup copies SQLite ledgers; for PostgreSQL use pg_dump")
    await asyncio.to_thread(_copy, db.sqlite_path.resolve(), target)
