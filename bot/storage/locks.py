"""The one-sender lock: however many bot processes run, only the holder drains the outbox.

On PostgreSQL it is a session advisory lock held on a connection of its own for as long as the
sender runs; PostgreSQL drops it when that session ends, so a crashed sender's successor takes
over as soon as the dead connection is noticed. On SQLite (one machine by definition) it is an
exclusive ``flock`` on a file beside the database, which the kernel drops when the process dies.
Either way, holding the lock proves every other sender is gone, which is what lets the holder
return all rows left ``sending`` to ``pending`` at start.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import logging
import os
import zlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.storage.db import BotDatabase

log = logging.getLogger(__name__)

SENDER_LOCK_KEY = 0x626F74_6F7574  # "bot" "out"; the migration lock uses 0x626F74


class SenderLock(abc.ABC):
    @abc.abstractmethod
    async def acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""

    @abc.abstractmethod
    async def alive(self) -> bool:
        """Whether the lock is still ours (its connection still answers)."""

    @abc.abstractmethod
    async def release(self) -> None: ...


class AdvisoryLock(SenderLock):
    def __init__(self, db: BotDatabase, key: int = SENDER_LOCK_KEY) -> None:
        self.db = db
        self.key = key
        self._conn: AsyncConnection | None = None

    async def acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = await self.db.engine.connect()
        try:
            got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
            await conn.commit()  # never sit idle in a transaction while holding the lock
        except Exception:
            await conn.invalidate()
            raise
        if not got:
            await conn.close()
            return False
        self._conn = conn
        return True

    async def alive(self) -> bool:
        if self._conn is None:
            return False
        try:
            await self._conn.scalar(text("SELECT 1"))
            await self._conn.commit()
        except Exception:
            log.exception("the outbox sender lost its lock connection")
            return False
        return True

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            await conn.commit()
            await conn.close()
        except Exception:
            # A connection that may still hold the lock must never go back to the pool.
            with contextlib.suppress(Exception):
                await conn.invalidate()


class FileLock(SenderLock):
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    async def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def alive(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def sender_lock(db: BotDatabase, channel: str = "telegram") -> SenderLock:
    """The lock of ``channel``'s one sender: each channel's outbox rows are drained by one
    sender of its own (issue 10), so a Telegram and a WeChat process each hold their own.
    Telegram keeps the key and file it always had, so a rolling upgrade still excludes."""
    if channel == "telegram":
        key, path = SENDER_LOCK_KEY, f"{db.url.database}.sender-lock"
    else:
        key = SENDER_LOCK_KEY + 1 + zlib.crc32(channel.encode())
        path = f"{db.url.database}.{channel}-sender-lock"
    if db.is_sqlite:
        return FileLock(path)
    return AdvisoryLock(db, key)


FEED_LOCK_KEY = SENDER_LOCK_KEY - 1  # "bot" "ous": the event feed's one reader


def feed_lock(db: BotDatabase) -> SenderLock:
    """The lock of the deployment's one event-feed reader (issue 12): however many bot
    processes (Telegram, WeChat, standbys) share a database, only the holder reads the ledger's
    feed, gathers digests and prunes; the others try again each poll and take over when the
    holder dies (PostgreSQL ends its session, the kernel drops its flock)."""
    if db.is_sqlite:
        return FileLock(f"{db.url.database}.feed-lock")
    return AdvisoryLock(db, FEED_LOCK_KEY)
