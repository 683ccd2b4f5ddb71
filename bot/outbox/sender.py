"""The outbox sender: the one place the bot speaks unasked, at the platform's pace.

One sender per deployment (``bot.storage.locks``) claims due rows in batches, most urgent first,
and sends them through python-telegram-bot, keeping

- the overall rate under ``rate_overall`` with its own ``SendWindow`` rather than the
  application's ``AIORateLimiter``: that limiter is a leaky bucket that lets a full second's
  burst through on top of the steady rate (a strict server answers 429 to the overshoot), and on
  a 429 it sleeps and retries inside the call (``max_retries=3``, which ``rate_limit_args=0``
  cannot turn off), holding a slot and hiding the 429 from us; bench/outbox.py measures both;
- each chat under ``rate_per_chat`` (``ChatLanes``);
- ``RetryAfter``: all sending pauses for the time Telegram names (flood control is per bot), and
  the row goes out again afterwards without counting as a failed attempt;
- ``Forbidden``: the row ends ``blocked``, the chat is marked blocked (no more rows are sent to it
  until the person writes again), and rows already waiting for it end ``blocked`` unsent;
- network errors and timeouts: the row goes back to ``pending`` with exponential backoff, and ends
  ``failed`` after ``max_attempts``; any other refusal (``BadRequest``…) ends ``failed`` at once.

Outcomes are written in batches (every ``flush_every`` seconds or ``flush_rows`` rows), so a crash
loses at most the outcomes of that short interval plus the sends in flight: those rows are still
``sending`` and go out once more after the restart — at most one duplicate each, and nothing lost.

It sends with its own ``telegram.Bot`` over ``AiohttpRequest`` (see
``bot.channels.telegram.http``), same
token and server as the application's, because PTB's default httpx backend cannot reach 1,000/s.

Broadcasts (a later issue) fit in as rows of kind ``broadcast`` at ``BULK`` priority: a
``resolvers[kind]`` hook fills in a row's content at claim time (from the broadcasts table), and
``on_outcomes`` sees every batch of outcomes inside the transaction that records them, which is
where per-broadcast counters belong.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import logging
import math
import random
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning, PTBUserWarning

from bot.chat.i18n import translator
from bot.outbox import notices
from bot.outbox.notices import NOTICE_METHOD
from bot.outbox.pacing import ChatLanes, SendWindow
from bot.storage import outbox
from bot.storage.chats import ChatStore, utcnow
from bot.storage.db import BotDatabase
from bot.storage.locks import SenderLock, sender_lock
from bot.storage.outbox import Claimed, Outcome

log = logging.getLogger(__name__)

Content = tuple[str, dict[str, Any]]  # Bot API method and its parameters (without chat_id)
Resolver = Callable[[Sequence[Claimed]], Awaitable[Mapping[int, Content | None]]]
OutcomeHook = Callable[[AsyncSession, Sequence[Outcome]], Awaitable[None]]


@dataclass
class SenderTuning:
    """Knobs with production defaults; tests shorten the waits."""

    batch: int = 500  # rows per claim at most
    buffer_seconds: float = 1.0  # claim ahead about this much sending (at rate_overall)
    max_in_flight: int = 64  # concurrent requests: enough for 1,000/s at up to 64 ms a request
    flush_every: float = 0.1  # seconds between outcome writes
    flush_rows: int = 200  # or sooner, once this many outcomes wait
    idle_poll: float = 0.5  # how often to look for rows when there were none
    retry_base: float = 2.0  # first network retry after about this many seconds, then doubling
    retry_cap: float = 300.0
    max_attempts: int = 8
    lock_retry: float = 5.0  # a standby sender tries for the lock this often
    lock_check: float = 5.0  # the active sender checks its lock connection this often


@dataclass
class SenderStats:
    """Running totals since this sender was made, read by ``/metrics`` (``bot.ops.metrics``).

    Plain numbers the sender bumps as it goes, not Prometheus objects: the hot path stays a few
    additions, and whoever exports them decides names and labels.
    """

    sent: int = 0
    blocked: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0  # network failures sent back to pending
    throttled: int = 0  # 429s answered
    throttled_seconds: float = 0.0  # how much longer all sending paused because of them
    window_waits: int = 0  # times a send was ready but the overall rate (``SendWindow``) held it
    window_wait_seconds: float = 0.0
    chat_waits: int = 0  # rows that waited for their chat's lane (``rate_per_chat``)
    chat_wait_seconds: float = 0.0
    recovered: int = 0  # rows found ``sending`` at start and returned to pending
    requests: int = 0
    request_seconds: float = 0.0  # summed; over ``requests`` the mean round trip
    by_state: dict[str, int] = field(default_factory=dict)


# Bot API methods the outbox sends, with the parameter each cannot do without.
SENDABLE = {"sendMessage": "text", "sendPhoto": "photo"}

# ``do_api_request`` asks callers to use the named method instead; the sender means not to.
warnings.filterwarnings(
    "ignore", message=r"Please use 'Bot\.send(Message|Photo)'", category=PTBUserWarning
)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def retry_after_seconds(exc: RetryAfter) -> float:
    """Telegram's wait, whichever type this PTB version hands it out as (int or timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        wait = exc.retry_after
    return wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)


class ApiCaller(Protocol):
    """What the sender sends through: a ``telegram.Bot``, or the console's printer."""

    async def do_api_request(self, endpoint: str, api_kwargs: dict[str, Any] | None = ..., /
                             ) -> Any: ...


class OutboxSender:
    def __init__(
        self,
        db: BotDatabase,
        chats: ChatStore,
        bot: ApiCaller,
        *,
        rate_overall: float,
        rate_per_chat: float,
        tuning: SenderTuning | None = None,
        resolvers: Mapping[str, Resolver] | None = None,
        on_outcomes: OutcomeHook | None = None,
        lock: SenderLock | None = None,
        channel: str = "telegram",
    ) -> None:
        """``channel``: the chats this sender serves (their rows only, under that channel's
        lock); the Bot API it calls is Telegram's, so only Telegram-shaped channels fit (the
        console prints the same calls)."""
        self.db = db
        self.chats = chats
        self.bot = bot
        self.tuning = tuning or SenderTuning()
        self.rate_overall = rate_overall
        self.rate_per_chat = rate_per_chat
        self.resolvers = dict(resolvers or {})
        self.on_outcomes = on_outcomes
        self.channel = channel
        self.lock = lock or sender_lock(db, channel)
        self.stats = SenderStats()
        self.active = False  # holds the lock and drains

        self._window = SendWindow(rate_overall)
        self._lanes: ChatLanes[Claimed] = ChatLanes(rate_per_chat)
        self._runnable: list[tuple[int, int, Claimed]] = []  # heap by (priority, id)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._outcomes: list[Outcome] = []
        self._newly_blocked: list[tuple[str, str]] = []
        self._blocked_now: set[tuple[str, str]] = set()  # 403s not yet written to the chats table
        self._pause_until = 0.0
        self._window_held_since: float | None = None  # ready to send, but over the rate
        self._parked_at: dict[int, float] = {}  # row id -> when it began waiting for its chat
        self._retry_due = math.inf  # earliest not_before we wrote back (monotonic)
        self._stopping = False
        self._poked = False  # something changed since the loop last looked
        self._waiter: asyncio.Future[None] | None = None
        self._stop_event = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._flush_now = asyncio.Event()
        self._flushing = False
        self._want_claim = True
        self._last_claim_at = -math.inf
        self._claims = 0  # claims started
        self._idle_after = -1  # the number of the last empty claim after which all was idle
        self._last_empty_claim = -1
        self._changed = asyncio.Condition()
        self._tried_lock = asyncio.Event()

    # --- control ----------------------------------------------------------------------------

    @property
    def high_water(self) -> int:
        """Rows to hold at most: about ``buffer_seconds`` of sending, so a notice claimed
        behind a broadcast's rows waits about that long, not minutes."""
        return max(64, math.ceil(self.rate_overall * self.tuning.buffer_seconds))

    @property
    def buffered(self) -> int:
        return len(self._runnable) + self._lanes.parked + len(self._in_flight)

    def wake(self) -> None:
        """Look for new rows now (something was just enqueued)."""
        self._want_claim = True
        self._poke()

    async def stop(self) -> None:
        self._stopping = True
        self._stop_event.set()
        self._poke()

    async def settled(self) -> None:
        """Return once nothing is due: every due row sent (or retried later) and recorded.

        Returns at once if this process is not the active sender (another process drains).
        """
        await self._tried_lock.wait()
        async with self._changed:
            target = self._claims
            self.wake()
            await self._changed.wait_for(
                lambda: not self.active or self._stopping or self._idle_after > target
            )

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the life of a sender ---------------------------------------------------------------

    async def run(self) -> None:
        """Wait for the lock (standby), then drain until stopped or the lock is lost."""
        try:
            while not self._stopping:
                try:
                    got = await self.lock.acquire()
                except Exception:
                    log.exception("outbox: could not try the sender lock")
                    got = False
                if not got:
                    self._tried_lock.set()
                    await self._pause(self.tuning.lock_retry)
                    continue
                try:
                    self.active = True
                    self._tried_lock.set()
                    await self._recover()
                    await self._drain()
                except Exception:
                    log.exception("outbox: the sender failed; starting over shortly")
                finally:
                    self.active = False
                    await self._notify()
                    await self.lock.release()
                if not self._stopping:
                    await self._pause(self.tuning.lock_retry)
        finally:
            self.active = False
            self._tried_lock.set()
            await self._notify()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    async def _recover(self) -> None:
        # Holding the lock proves every earlier sender is gone: all ``sending`` rows are orphans.
        # That includes this process's own, if it lost the lock and could not record them; what
        # it still holds in memory about them is stale now.
        self._outcomes.clear()
        self._newly_blocked.clear()
        self._blocked_now.clear()
        self._runnable.clear()
        self._lanes.drain()
        self._parked_at.clear()
        self._pause_until = 0.0
        self._window_held_since = None
        async with self.db.session() as session:
            n = await outbox.recover(
                session, utcnow() + dt.timedelta(seconds=1), self.channel
            )
        self.stats.recovered += n
        if n:
            log.warning("outbox: %d rows were in flight when the last sender stopped; resending", n)

    async def _drain(self) -> None:
        done = asyncio.Event()
        flusher = asyncio.create_task(self._flush_loop(done))
        next_lock_check = time.monotonic() + self.tuning.lock_check
        try:
            while not self._stopping:
                now = time.monotonic()
                if now >= next_lock_check:
                    next_lock_check = now + self.tuning.lock_check
                    if not await self.lock.alive():
                        log.error("outbox: lock lost; stopping sends until it is back")
                        break
                if self._should_claim(now):
                    await self._claim()
                now = time.monotonic()
                for row in self._lanes.due(now):
                    self._unpark(row, now)
                    heapq.heappush(self._runnable, (row.priority, row.id, row))
                self._dispatch(now)
                if self._last_empty_claim > self._idle_after:
                    await self._check_idle()
                await self._wait(self._next_wake(time.monotonic()))
        finally:
            try:
                await self._wind_down()
            finally:
                # Never cancel a flush half-way: its outcomes would be lost and their rows sent
                # again. The flusher finishes what it is doing and then stops.
                done.set()
                self._flush_now.set()
                await flusher

    def _should_claim(self, now: float) -> bool:
        if self.buffered > self.high_water // 2:
            return False
        return (
            self._want_claim
            or now - self._last_claim_at >= self.tuning.idle_poll
            or now >= self._retry_due
        )

    def _next_wake(self, now: float) -> float:
        times = [now + self.tuning.idle_poll, self._lanes.next_due(), self._retry_due]
        if self._runnable and len(self._in_flight) < self.tuning.max_in_flight:
            times.append(max(self._pause_until, self._window.next_free(now)))
        return min(times)

    def _poke(self) -> None:
        """Wake the loop: a send finished, rows arrived, outcomes piled up, or stop."""
        self._poked = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, until: float) -> None:
        """Sleep until ``until`` or a poke, whichever is first.

        A bare future and one timer handle: this runs once per send at 1,000/s, where
        ``asyncio.wait_for`` on an event (a task and a timeout each time) cost more than the
        sender's own bookkeeping.
        """
        if self._poked:
            self._poked = False
            return
        timeout = until - time.monotonic()
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
            self._poked = False

    # --- claiming ---------------------------------------------------------------------------

    async def _claim(self) -> None:
        self._claims += 1
        number = self._claims
        self._want_claim = False
        self._last_claim_at = time.monotonic()
        if self._retry_due <= self._last_claim_at:
            self._retry_due = math.inf
        limit = min(self.tuning.batch, self.high_water - self.buffered)
        try:
            async with self.db.session() as session:
                rows = await outbox.claim(session, limit, channel=self.channel)
                states = await outbox.chat_states(session, [r.key for r in rows])
        except Exception:
            log.exception("outbox: could not claim rows; trying again shortly")
            return
        if not rows:
            self._last_empty_claim = number
            return
        self._want_claim = True  # there may be more
        try:
            rows = await self._resolve(rows)
        except Exception:
            log.exception("outbox: could not resolve the content of %d rows", len(rows))
            for row in rows:
                self._done(self._retry(row, "content could not be resolved"))
            return
        rows = self._render(rows, states)
        now = time.monotonic()
        for row in rows:
            state = states.get(row.key)
            if (state is not None and state.blocked) or row.key in self._blocked_now:
                self._done(Outcome(row, outbox.BLOCKED, "the chat has blocked the bot"))
            elif row.kind == "notice" and state is not None and not state.notices:
                self._done(Outcome(row, outbox.SKIPPED, "notices are off"))
            elif self._lanes.offer(row.key, row, now):
                heapq.heappush(self._runnable, (row.priority, row.id, row))
            else:
                self.stats.chat_waits += 1
                self._parked_at[row.id] = now

    def _render(
        self, rows: list[Claimed], states: Mapping[tuple[str, str], outbox.ChatState]
    ) -> list[Claimed]:
        """Neutral notices (issue 9) as the Bot API call that says them, in the language the
        chat has now; a notice that says nothing (or is not one) ends ``skipped``/``failed``."""
        out: list[Claimed] = []
        for row in rows:
            if row.method != NOTICE_METHOD:
                out.append(row)
                continue
            state = states.get(row.key)
            try:
                notice = notices.from_payload(row.payload)
            except (KeyError, ValueError) as exc:
                self._done(Outcome(row, outbox.FAILED, f"not a notice: {exc}", attempts=1))
                continue
            text = notices.notice_text(notice, translator(state.locale if state else "zh_Hans"))
            if text is None:
                self._done(Outcome(row, outbox.SKIPPED, "the notice says nothing"))
                continue
            out.append(replace(row, method="sendMessage", payload={"text": text}))
        return out

    async def _resolve(self, rows: list[Claimed]) -> list[Claimed]:
        """Rows whose content lives elsewhere (broadcasts) get it from their kind's resolver."""
        if not self.resolvers:
            return rows
        out: list[Claimed] = []
        by_kind: dict[str, list[Claimed]] = {}
        for row in rows:
            if row.kind in self.resolvers:
                by_kind.setdefault(row.kind, []).append(row)
            else:
                out.append(row)
        for kind, group in by_kind.items():
            contents = await self.resolvers[kind](group)
            for row in group:
                content = contents.get(row.id)
                if content is None:
                    self._done(Outcome(row, outbox.SKIPPED, "no content (cancelled)"))
                    continue
                method, payload = content
                out.append(Claimed(row.id, row.channel, row.address, row.kind, row.priority,
                                   row.broadcast_id, method, payload, row.attempts))
        out.sort(key=lambda r: (r.priority, r.id))
        return out

    # --- sending ----------------------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        started = False
        while (
            self._runnable
            and len(self._in_flight) < self.tuning.max_in_flight
            and now >= self._pause_until
            and self._window.next_free(now) <= now
        ):
            _p, _id, row = heapq.heappop(self._runnable)
            self._window.start()
            task = asyncio.create_task(self._send(row))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            started = True
        self._note_window(now, started)

    def _note_window(self, now: float, started: bool) -> None:
        """Account the time sends were ready (rows waiting, a request slot free, no flood pause)
        but held back by the overall rate alone: one wait per send it held, and for how long —
        what tells an operator the rate, not Telegram or the network, is the bottleneck."""
        held = (
            bool(self._runnable)
            and len(self._in_flight) < self.tuning.max_in_flight
            and now >= self._pause_until
            and self._window.next_free(now) > now
        )
        since = self._window_held_since
        if since is not None and (started or not held):
            self.stats.window_wait_seconds += now - since
            self._window_held_since = since = None
        if held and since is None:
            self._window_held_since = now
            self.stats.window_waits += 1

    def _unpark(self, row: Claimed, now: float) -> None:
        parked = self._parked_at.pop(row.id, None)
        if parked is not None:
            self.stats.chat_wait_seconds += now - parked

    async def _call(self, row: Claimed) -> None:
        """Send the stored Bot API call as it is.

        ``do_api_request`` rather than ``send_message``: the answer is not needed, and turning
        it into a ``Message`` object cost a quarter of the sender's CPU at 1,000/s.
        """
        required = SENDABLE.get(row.method)
        if required is None or not isinstance(row.payload.get(required), str):
            # Never worth retrying: the row itself is wrong.
            raise BadRequest(f"the outbox cannot send {row.method!r} with {sorted(row.payload)}")
        await self.bot.do_api_request(row.method, {"chat_id": int(row.address), **row.payload})

    async def _send(self, row: Claimed) -> None:
        outcome: Outcome | None = None
        started = time.monotonic()
        try:
            await self._call(row)
            outcome = Outcome(row, outbox.SENT)
        except RetryAfter as exc:
            seconds = retry_after_seconds(exc)
            now = time.monotonic()
            until = now + seconds
            # Only the extension counts: 64 sends refused at once pause sending once, not 64 times.
            paused = self._pause_until
            self.stats.throttled_seconds += seconds if paused <= now else max(0.0, until - paused)
            self._pause_until = max(paused, until)
            self.stats.throttled += 1
            log.warning("outbox: flood control, pausing all sends for %.1f s", seconds)
            heapq.heappush(self._runnable, (row.priority, row.id, row))
        except Forbidden as exc:
            outcome = Outcome(row, outbox.BLOCKED, str(exc))
            if row.key not in self._blocked_now:
                self._blocked_now.add(row.key)
                self._newly_blocked.append(row.key)
            for waiting in self._lanes.drop(row.key):
                self._parked_at.pop(waiting.id, None)
                self._done(Outcome(waiting, outbox.BLOCKED, "the chat has blocked the bot"))
        except BadRequest as exc:  # before NetworkError: PTB derives it from NetworkError
            outcome = Outcome(row, outbox.FAILED, f"{type(exc).__name__}: {exc}", attempts=1)
        except NetworkError as exc:  # includes TimedOut
            outcome = self._retry(row, f"{type(exc).__name__}: {exc}")
        except TelegramError as exc:
            outcome = Outcome(row, outbox.FAILED, f"{type(exc).__name__}: {exc}", attempts=1)
        except Exception as exc:
            log.exception("outbox: unexpected error sending row %d", row.id)
            outcome = self._retry(row, f"{type(exc).__name__}: {exc}")
        finally:
            answered = time.monotonic()
            self.stats.requests += 1
            self.stats.request_seconds += answered - started
            self._window.finish(answered)
            if outcome is not None:
                self._lanes.finish(row.key, answered)
                self._done(outcome)
            # Leave the in-flight set now, not in a done callback that runs after the loop
            # has already woken up, found every slot taken and gone back to sleep.
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.discard(task)
            self._poke()

    def _retry(self, row: Claimed, error: str) -> Outcome:
        attempts = row.attempts + 1
        if attempts >= self.tuning.max_attempts:
            return Outcome(row, outbox.FAILED, error, attempts=attempts)
        t = self.tuning
        delay = min(t.retry_cap, t.retry_base * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
        self.stats.retried += 1
        self._retry_due = min(self._retry_due, time.monotonic() + delay + t.flush_every)
        not_before = utcnow() + dt.timedelta(seconds=delay)
        return Outcome(row, outbox.PENDING, error, not_before=not_before, attempts=attempts)

    def _done(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        stats = self.stats
        stats.by_state[outcome.state] = stats.by_state.get(outcome.state, 0) + 1
        if outcome.state == outbox.SENT:
            stats.sent += 1
        elif outcome.state == outbox.BLOCKED:
            stats.blocked += 1
        elif outcome.state == outbox.FAILED:
            stats.failed += 1
        elif outcome.state == outbox.SKIPPED:
            stats.skipped += 1
        if len(self._outcomes) >= self.tuning.flush_rows:
            self._flush_now.set()

    # --- recording --------------------------------------------------------------------------

    async def _flush_loop(self, done: asyncio.Event) -> None:
        """Record outcomes every ``flush_every`` seconds, or as soon as ``flush_rows`` wait:
        what is sent but not yet recorded is what a crash would send twice."""
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.tuning.flush_every)
            self._flush_now.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write waiting outcomes (and newly blocked chats) in one transaction."""
        async with self._flush_lock:
            if not self._outcomes and not self._newly_blocked:
                return
            outcomes, self._outcomes = self._outcomes, []
            blocked, self._newly_blocked = self._newly_blocked, []
            self._flushing = True
            try:
                if outcomes:
                    async with self.db.session() as session:
                        await outbox.record(session, outcomes, utcnow())
                        if self.on_outcomes is not None:
                            await self.on_outcomes(session, outcomes)
            except Exception:
                log.exception("outbox: could not record %d outcomes; will retry", len(outcomes))
                self._outcomes[:0] = outcomes
                self._newly_blocked[:0] = blocked
                self._flushing = False
                return
            try:
                if blocked:
                    await self.chats.mark_blocked(blocked)
            except Exception:
                log.exception("outbox: could not mark %d chats blocked; will retry", len(blocked))
                self._newly_blocked[:0] = blocked
                blocked = []
            finally:
                self._flushing = False
            # From here on the database says these chats are blocked; a later /start clears it.
            self._blocked_now.difference_update(blocked)
        self._poke()

    async def _check_idle(self) -> None:
        """After an empty claim with nothing in hand, once all outcomes are written: settled."""
        if self._last_empty_claim <= self._idle_after or self._want_claim or self.buffered:
            return
        if self._outcomes or self._newly_blocked or self._flushing:
            await self.flush()
            if self._outcomes or self._newly_blocked:
                return  # the write failed; it is retried
        self._idle_after = self._last_empty_claim
        await self._notify()

    async def _wind_down(self) -> None:
        """Stop cleanly: let sends in flight finish, give unsent rows back, record everything."""
        if self._in_flight:
            _done, stuck = await asyncio.wait(set(self._in_flight), timeout=30)
            for task in stuck:  # their rows stay ``sending``: the next start sends them again
                task.cancel()
        unsent = [row for _p, _i, row in self._runnable] + self._lanes.drain()
        self._runnable.clear()
        self._parked_at.clear()
        self._window_held_since = None
        for row in unsent:
            self._outcomes.append(Outcome(row, outbox.PENDING, None, attempts=row.attempts))
        for _ in range(3):
            await self.flush()
            if not self._outcomes:
                break
