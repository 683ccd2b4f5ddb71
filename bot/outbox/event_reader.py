"""Reads the ledger's event feed by cursor and turns member events into outbox notices.

Each page's notices and the cursor's move are written in one bot-database transaction, and every
notice is keyed by its event id: a crash or a ledger outage between reading and writing means the
page is read again, and the outbox keeps the first copy — no notice is lost and none is repeated.

On its very first start (no stored cursor) the reader begins at the feed's current head: a bot
deployed onto a ledger with history must not tell every member about every purchase they ever
made. The ledger has no "head" call, so the head is found by exponential then binary search over
``events(after=…)`` (feed positions are dense), in a few dozen reads however long the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.chat.i18n import translator
from bot.outbox import notices
from bot.services import Services
from bot.storage import cursors
from bot.storage.outbox import Outgoing, enqueue
from ledger_client.errors import Unavailable
from ledger_client.models import EventsPage

log = logging.getLogger(__name__)

CURSOR = "ledger_events"


NEUTRAL_NOTICES = frozenset({"wechat"})
"""Channels whose notices are stored neutral (kind + fields, issue 9) and rendered when sent,
because the platform wants structured templates (WeChat); the others store Bot API text."""
NOTICE_METHOD = "notice"  # the outbox row's method for a neutral notice


@dataclass
class ReaderTuning:
    page_size: int = 1000  # the ledger's largest page
    backoff_base: float = 1.0  # first wait after the ledger failed to answer, then doubling
    backoff_cap: float = 60.0


class _CursorMoved(Exception):
    """Another reader advanced the cursor first; this page's work is rolled back."""


class EventReader:
    def __init__(
        self,
        services: Services,
        *,
        tuning: ReaderTuning | None = None,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.services = services
        self.tuning = tuning or ReaderTuning()
        self.on_enqueued = on_enqueued
        self.failures = 0  # consecutive failed polls
        self.delays: list[float] = []  # every backoff wait taken, in order (for operators, tests)
        self.events_read = 0
        self.enqueued = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._changed = asyncio.Condition()

    # --- reading ----------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """Read one page after the stored cursor; returns how many events it held."""
        async with self._lock:
            after = await self.position()
            page = await self.services.ledger.events(after=after, limit=self.tuning.page_size)
            if not page.events:
                return 0
            messages = await self._notices(page)
            try:
                async with self.services.db.session() as session:
                    if not await cursors.advance(session, CURSOR, after, page.next_after):
                        raise _CursorMoved
                    new = await enqueue(session, messages)
            except _CursorMoved:
                log.info("event feed: another reader moved the cursor past %d", after)
                return 0
        self.events_read += len(page.events)
        self.enqueued += new
        if new and self.on_enqueued is not None:
            self.on_enqueued()
        return len(page.events)

    async def catch_up(self) -> int:
        """Read pages until the feed has nothing more; returns how many events were read."""
        total = 0
        while True:
            n = await self.poll_once()
            total += n
            if n < self.tuning.page_size:
                return total

    async def _notices(self, page: EventsPage) -> list[Outgoing]:
        members = sorted(
            {e.member_id for e in page.events if e.member_id is not None and e.type in
             notices.RENDERERS}
        )
        profiles = await self.services.chats.by_member(members)
        out: list[Outgoing] = []
        for event in page.events:
            profile = profiles.get(event.member_id) if event.member_id is not None else None
            if profile is None or not profile.notices or profile.blocked:
                continue
            if profile.channel in NEUTRAL_NOTICES:
                notice = notices.as_notice(event)
                if notice is not None and notices.render(event, translator(profile.locale)):
                    out.append(
                        Outgoing(
                            channel=profile.channel,
                            address=profile.address,
                            method=NOTICE_METHOD,
                            payload={"kind": notice.kind, "fields": dict(notice.fields)},
                            kind="notice",
                            dedupe_key=f"event:{event.id}",
                        )
                    )
                continue
            text = notices.render(event, translator(profile.locale))
            if text is None:
                continue
            out.append(
                Outgoing(
                    channel=profile.channel,
                    address=profile.address,
                    method="sendMessage",
                    payload={"text": text},
                    kind="notice",
                    dedupe_key=f"event:{event.id}",
                )
            )
        return out

    # --- where to start ---------------------------------------------------------------------

    async def position(self) -> int:
        """The stored cursor; on first start, the feed's head (stored before it is used)."""
        async with self.services.db.session() as session:
            stored = await cursors.get(session, CURSOR)
        if stored is not None:
            return stored
        head = await self.feed_head()
        async with self.services.db.session() as session:
            stored = await cursors.start(session, CURSOR, head)
        log.info("event feed: first start, reading from position %d (the head)", stored)
        return stored

    async def feed_head(self) -> int:
        """The feed position of its newest event (0 for an empty feed).

        A partial page read after any position before the head ends at the head; an empty page
        says the head is at or before that position. Probing 1000, 2000, 4000… past the last
        full page, then halving, finds it in O(log head) reads.
        """
        limit = self.tuning.page_size
        lo, hi, step = 0, -1, limit
        probe = 0
        while True:
            page = await self.services.ledger.events(after=probe, limit=limit)
            n = len(page.events)
            if 0 < n < limit:
                return page.next_after
            if n == 0:
                if probe <= lo:
                    return lo
                hi = probe
            else:
                lo = page.next_after
            if hi < 0:
                probe, step = lo + step, step * 2
            else:
                probe = (lo + hi) // 2

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll every ``event_poll_seconds``; while the ledger fails, wait longer each time."""
        poll = self.services.settings.event_poll_seconds
        while not self._stopping:
            try:
                await self.catch_up()
                self.failures = 0
                delay = poll
            except Exception as exc:
                self.failures += 1
                t = self.tuning
                delay = min(t.backoff_cap, t.backoff_base * 2 ** (self.failures - 1))
                self.delays.append(delay)
                del self.delays[:-100]  # a long outage keeps only the latest
                if isinstance(exc, Unavailable):
                    log.warning("event feed: ledger unavailable (%s); next try in %.1f s",
                                exc, delay)
                else:
                    log.exception("event feed: reading failed; next try in %.1f s", delay)
            async with self._changed:
                self._changed.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def wait_until(self, predicate: Callable[[EventReader], bool]) -> None:
        """Wait until ``predicate(self)`` holds after some poll (tests, operators)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))
