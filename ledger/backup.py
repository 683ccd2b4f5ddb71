"""A consistent copy of a live SQLite ledger, using SQLite's online backup.

The backup API copies every page in one step, under one read transaction: the ledger runs in
WAL mode, so writers keep going, and the copy is one point in time; ``greenpoints ledger
verify`` on the copy proves it. (Copied in several steps, a backup starts over whenever another
connection writes between two steps, so on a busy ledger of any size it would never finish.)
Restore is copying the file back while the ledger is stopped (README, Operations).

A target that is the live database (or its -wal/-shm file), a directory, or a place that cannot
be written is refused with ``BackupRefused`` before or instead of a traceback; the live ledger
is never touched, and a half-written copy is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from ledger.db import Database


class BackupRefused(Exception):
    """The backup cannot be written where asked; the message says why, in one line."""


def _check_target(source: Path, target: Path) -> None:
    live = {source, *(source.with_name(source.name + end) for end in ("-wal", "-shm", "-journal"))}
    if target.resolve() in live or any(_same_file(target, path) for path in live):
        raise BackupRefused(
            f"{target} is the live ledger database itself; write the backup somewhere else"
        )
    if target.is_dir():
        raise BackupRefused(
            f"{target} is a directory; name the backup file, e.g. {target / 'ledger.db'}"
        )


def _same_file(a: Path, b: Path) -> bool:
    """One file under two names (a hard link): writing one overwrites the other."""
    try:
        return a.samefile(b)
    except OSError:  # either does not exist
        return False


def _copy(source: Path, target: Path) -> None:
    _check_target(source, target)
    tmp = target.with_suffix(target.suffix + ".partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.execute("PRAGMA busy_timeout=30000")
                src.backup(dst, pages=-1)  # one step: see the module docstring
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        tmp.replace(target)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BackupRefused(f"cannot write the backup to {target}: {reason}") from None


async def backup(db: Database, target: Path) -> None:
    """Copy the SQLite ledger to ``target`` (see the module docstring). Raises ``ValueError``
    for PostgreSQL and ``BackupRefused`` for a target that cannot be the copy."""
    if db.sqlite_path is None:
        raise ValueError("backup copies SQLite ledgers; for PostgreSQL use pg_dump")
    await asyncio.to_thread(_copy, db.sqlite_path.resolve(), target)
