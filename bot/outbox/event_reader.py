"""Reads the ledger's event feed by cursor and turns member events into outbox notices.

Each page's notices and the cursor's move are written in one bot-database transaction, and every
notice is keyed by its event id: a crash or a ledger outage between reading and writing means the
page is read again, and the outbox keeps the first copy — no notice is lost and none is repeated.

On its very first start (no stored cursor) the reader begins at the feed's current head: a bot
deployed onto a ledger with history must not tell every member about every purchase they ever
made. The ledger has no "head" call, so the head is found by exponential then binary search over
``events(after=…)`` (feed positions are dense), in a few dozen reads however long the feed.

Notices are stored neutral for every channel (kind + fields, issue 9) and follow the notice
policy (``bot.outbox.policy``, issue 12): receipts are due at once; grants and expiry warnings
are ``held`` and, once due, gathered per person into one digest or one warning (``gather_due``,
run by the reader after each catch-up). Sent rows older than the retention window are pruned.

One reader per deployment (issue 12): it reads only while it holds the feed lock
(``bot.storage.locks.feed_lock``); a second bot process on the same database stays idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.chat.i18n import translator
from bot.chat.replies import Notice
from bot.outbox import notices, policy
from bot.outbox.notices import NOTICE_METHOD
from bot.services import Services
from bot.storage import cursors, outbox
from bot.storage.chats import Profile, utcnow
from bot.storage.locks import SenderLock, feed_lock
from bot.storage.outbox import Outgoing, enqueue
from ledger_client.errors import Unavailable
from ledger_client.models import Event, EventsPage

log = logging.getLogger(__name__)

CURSOR = "ledger_events"
GATHERED_KEPT = dt.timedelta(days=1)  # how long a row told in a gathered message is kept
__all__ = ["CURSOR", "NOTICE_METHOD", "EventReader", "ReaderTuning"]


@dataclass
class ReaderTuning:
    page_size: int = 1000  # the ledger's largest page
    backoff_base: float = 1.0  # first wait after the ledger failed to answer, then doubling
    backoff_cap: float = 60.0
    gather_chats: int = 500  # people per gathering transaction
    prune_every: float = 3600.0  # seconds between pruning passes
    prune_batch: int = 5000  # rows deleted per transaction


class _CursorMoved(Exception):
    """Another reader advanced the cursor first; this page's work is rolled back."""


class EventReader:
    def __init__(
        self,
        services: Services,
        *,
        tuning: ReaderTuning | None = None,
        on_enqueued: Callable[[], None] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        lock: SenderLock | None = None,
    ) -> None:
        """``clock``: now, naive UTC (tests inject one); ``lock``: the deployment's one feed
        lock (``feed_lock`` of the bot database by default)."""
        self.services = services
        self.tuning = tuning or ReaderTuning()
        self.on_enqueued = on_enqueued
        self.clock = clock
        self.lock = lock or feed_lock(services.db)
        self.holds_lock = False
        self.gathered = 0  # gathered messages enqueued
        self.pruned = 0
        self._last_prune = -float("inf")
        settings = services.settings
        self.quiet = policy.QuietHours.parse(settings.quiet_hours)
        self.failures = 0  # consecutive failed polls
        self.delays: list[float] = []  # every backoff wait taken, in order (for operators, tests)
        self.events_read = 0
        self.enqueued = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._changed = asyncio.Condition()

    # --- reading ----------------------------------------------------------------------------

    async def owns_feed(self) -> bool:
        """Whether this process is the deployment's feed reader (taking the lock if free)."""
        if not self.holds_lock:
            self.holds_lock = await self.lock.acquire()
            if self.holds_lock:
                log.info("event feed: this process reads the feed")
        return self.holds_lock

    async def release(self) -> None:
        """Give the feed lock up (at stop), so another process may read."""
        if self.holds_lock:
            self.holds_lock = False
            await self.lock.release()

    async def poll_once(self) -> int:
        """Read one page after the stored cursor; returns how many events it held (0 when
        another process holds the feed lock)."""
        async with self._lock:
            if not await self.owns_feed():
                return 0
            after = await self.position()
            page = await self.services.ledger.events(after=after, limit=self.tuning.page_size)
            if not page.events:
                return 0
            messages = await self._notices(page)
            try:
                async with self.services.db.session() as session:
                    if not await cursors.advance(session, CURSOR, after, page.next_after):
                        raise _CursorMoved
                    new = await enqueue(session, messages, self.clock())
            except _CursorMoved:
                log.info("event feed: another reader moved the cursor past %d", after)
                return 0
        self.events_read += len(page.events)
        self.enqueued += new
        if new and self.on_enqueued is not None:
            self.on_enqueued()
        return len(page.events)

    async def catch_up(self) -> int:
        """Read pages until the feed has nothing more, then gather what is due and prune when
        it is time; returns how many events were read."""
        total = 0
        while True:
            n = await self.poll_once()
            total += n
            if n < self.tuning.page_size:
                break
        if self.holds_lock:
            await self.gather_due()
            if time.monotonic() - self._last_prune >= self.tuning.prune_every:
                self._last_prune = time.monotonic()
                await self.prune()
        return total

    async def _notices(self, page: EventsPage) -> list[Outgoing]:
        members = sorted(
            {e.member_id for e in page.events if e.member_id is not None and e.type in
             notices.EVENT_KINDS}
        )
        profiles = await self.services.chats.by_member(members)
        async with self.services.db.session() as session:
            pruned_through = await cursors.get(session, outbox.PRUNED_THROUGH)
        now = self.clock()
        out: list[Outgoing] = []
        for event in page.events:
            if pruned_through is not None and event.seq <= pruned_through:
                continue  # read before, and its row pruned since: told already
            if event.type == notices.UNUSUAL_VOLUME:
                out += await self._admin_alerts(event)
                continue
            profile = profiles.get(event.member_id) if event.member_id is not None else None
            if profile is None or not profile.notices or profile.blocked:
                continue
            message = self._outgoing(event, profile, now)
            if message is not None:
                out.append(message)
        return out

    async def _admin_alerts(self, event: Event) -> list[Outgoing]:
        """An admins' alert (issue 11: unusual volume) to every admin of this bot who has a chat
        with it (GREENPOINTS_ADMIN_IDS; a bot cannot open a chat), in their language, written
        when read (an admin's alert is not gathered or held). Channels with structured template
        notices (WeChat) have no admins (``Services.is_admin``)."""
        channel = self.services.channel
        if channel == "wechat":
            return []
        out: list[Outgoing] = []
        for admin in sorted(self.services.settings.admin_ids):
            profile = await self.services.chats.get((channel, str(admin)))
            if profile is None or profile.blocked:
                continue
            text = notices.unusual_volume(translator(profile.locale), event.payload)
            out.append(
                Outgoing(
                    channel=channel,
                    address=profile.address,
                    method=NOTICE_METHOD,
                    payload=notices.as_payload(Notice(notices.WRITTEN, {"text": text})),
                    kind="notice",
                    dedupe_key=f"event:{event.id}:admin:{admin}",
                )
            )
        return out

    def _outgoing(self, event: Event, profile: Profile, now: dt.datetime) -> Outgoing | None:
        """The event's notice for this person, due when the policy says (or None)."""
        notice = notices.as_notice(event)
        if notice is None or notices.render(event, translator(profile.locale)) is None:
            return None
        settings = self.services.settings
        due = policy.due(
            event.type,
            event.created_at,
            now,
            period=policy.period_of(profile.digest, settings.notice_digest_default),
            tz=policy.zone(profile.timezone, settings.timezone),
            quiet=self.quiet,
            weekday=policy.digest_weekday(profile.channel, profile.address),
            expires=notices.expiry_of(event.payload),
            warning_phase=policy.phase(profile.channel, profile.address, policy.WARNING_EVERY),
        )
        if due is None:
            return None
        held = event.type in policy.GATHERED
        return Outgoing(
            channel=profile.channel,
            address=profile.address,
            method=NOTICE_METHOD,
            payload=notices.as_payload(notice),
            kind="notice",
            dedupe_key=f"event:{event.id}",
            priority=policy.GATHERED.get(event.type, outbox.NOTICE),
            state=outbox.HELD if held else outbox.PENDING,
            not_before=due if held else None,
        )

    # --- gathering and pruning ----------------------------------------------------------------

    async def gather_due(self, *, everything: bool = False) -> int:
        """Gather every person's due held rows into one message each (a digest of grants, one
        expiry warning), in batches of ``gather_chats`` people; returns the messages enqueued.

        Each batch is one transaction: the gathered message is enqueued and its rows marked
        ``gathered`` together, so every held row ends in exactly one message. A person now in
        their quiet hours (a gathering that ran late) has their rows postponed to the end of
        them; a person whose digest is off now has their held grants skipped.

        ``everything``: gather every held row now, due or not, quiet hours or not (the demo's
        ``:release``, so a digest can be seen without waiting a week).
        """
        made = 0
        while True:
            now = self.clock()
            due_by = dt.datetime.max if everything else now
            async with self.services.db.session() as session:
                keys = await outbox.due_chats(session, due_by, self.tuning.gather_chats)
                if not keys:
                    break
                held = _due_or_gathered_with(await outbox.held_of(session, keys), due_by)
                profiles = await self.services.chats.by_keys(keys, session)
                messages = self._gathered(held, profiles, now, quiet=not everything)
                for message, ids, state in messages:
                    if state == "postpone" and message.not_before is not None:
                        await outbox.postpone_held(session, ids, message.not_before)
                    elif state == outbox.GATHERED:
                        await outbox.settle_held(session, ids, state, now, message.dedupe_key)
                    else:
                        await outbox.settle_held(session, ids, state, now, "digest off")
                made += await enqueue(
                    session,
                    [m for m, _ids, state in messages if state == outbox.GATHERED],
                    now,
                )
        self.gathered += made
        if made and self.on_enqueued is not None:
            self.on_enqueued()
        return made

    def _gathered(
        self, held: list[outbox.Held], profiles: dict[tuple[str, str], Profile],
        now: dt.datetime, *, quiet: bool = True,
    ) -> list[tuple[Outgoing, list[int], str]]:
        settings = self.services.settings
        groups: dict[tuple[str, str, int], list[outbox.Held]] = {}
        for row in held:
            groups.setdefault((row.channel, row.address, row.priority), []).append(row)
        out: list[tuple[Outgoing, list[int], str]] = []
        for (channel, address, priority), rows in groups.items():
            ids = [r.id for r in rows]
            profile = profiles.get((channel, address))
            tz = policy.zone(profile.timezone if profile else None, settings.timezone)
            kind = str(rows[0].payload.get("kind"))
            notice = notices.gather(kind, [dict(r.payload.get("fields") or {}) for r in rows])
            message = Outgoing(
                channel=channel,
                address=address,
                method=NOTICE_METHOD,
                payload=notices.as_payload(notice),
                kind="notice",
                dedupe_key=f"gathered:{ids[0]}",
                priority=priority,
            )
            period = policy.period_of(
                profile.digest if profile else None, settings.notice_digest_default
            )
            later = policy.after_quiet(now, tz, self.quiet) if quiet else now
            if kind == notices.VOUCHER_GRANTED and period == "off":
                out.append((message, ids, outbox.SKIPPED))
            elif later > now:
                out.append((Outgoing(channel, address, NOTICE_METHOD, {}, "notice",
                                     not_before=later), ids, "postpone"))
            else:
                out.append((message, ids, outbox.GATHERED))
        return out

    async def prune(self) -> int:
        """Delete rows that ended more than ``GREENPOINTS_OUTBOX_RETENTION_DAYS`` ago, and rows
        gathered into a message more than ``GATHERED_KEPT`` ago (the message says what they
        said), in batches; returns how many (``outbox.prune`` keeps replays told once)."""
        now = self.clock()
        retention = dt.timedelta(days=self.services.settings.outbox_retention_days)
        total = 0
        for before, states in (
            (now - retention, outbox.FINAL_STATES),
            (now - min(retention, GATHERED_KEPT), (outbox.GATHERED,)),
        ):
            while True:
                async with self.services.db.session() as session:
                    n = await outbox.prune(
                        session, before, CURSOR, self.tuning.prune_batch, states
                    )
                total += n
                if n < self.tuning.prune_batch:
                    break
        self.pruned += total
        return total

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
        """Poll every ``event_poll_seconds``; while the ledger fails, wait longer each time.
        While another process holds the feed lock, only try for it each poll."""
        poll = self.services.settings.event_poll_seconds
        try:
            await self._run(poll)
        finally:
            await self.release()

    async def _run(self, poll: float) -> None:
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


def _due_or_gathered_with(held: list[outbox.Held], due_by: dt.datetime) -> list[outbox.Held]:
    """The held rows to gather now: those due, and every expiry warning of a person one of
    whose warnings is due (grants not due yet belong to a later digest)."""
    warned = {h.key for h in held if h.priority == outbox.EXPIRING and h.not_before <= due_by}
    return [
        h for h in held
        if h.not_before <= due_by or (h.priority == outbox.EXPIRING and h.key in warned)
    ]
