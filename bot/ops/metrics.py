"""What the bot counts for Prometheus, per application (``/metrics`` on the bot's web port).

Each application gets its own ``CollectorRegistry`` (in ``bot_data``), never the process-global
one, so tests and several applications in one process neither collide nor add to each other.

Three kinds of numbers, each gathered where it is cheapest:

- updates, pushed as they happen: the middleware counts each update in and starts its clock,
  and every handler's callback is wrapped (``instrument``) to count the update out with the
  handler that took it, its outcome and its latency;
- the outbox sender's and event reader's running totals (``SenderStats``, ``EventReader``),
  pulled at scrape time by a collector, so the sender's hot path stays plain additions;
- the outbox depth, read from the database at scrape time (``refresh``) without walking the
  table: broadcast rows come from the per-broadcast counters the sender keeps in the same
  transactions as the rows (exact, one row per running broadcast), notices from an index count
  that stops at ``NOTICE_COUNT_CAP``, so a scrape during a twelve-million-row broadcast or a
  release-day flood of notices costs the same as any other.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, literal, select
from telegram import Update
from telegram.error import RetryAfter
from telegram.ext import AIORateLimiter, ApplicationHandlerStop

from bot.channels.telegram.background import running
from bot.channels.telegram.context import App
from bot.outbox.sender import SenderStats, retry_after_seconds
from bot.storage import outbox
from bot.storage.chats import utcnow
from bot.storage.db import BotDatabase
from bot.storage.schema import Broadcast, OutboxMessage

log = logging.getLogger(__name__)

METRICS_KEY = "metrics"
NOTICE_COUNT_CAP = 100_000  # notice depth is exact up to here; the count stops walking there
REFRESH_TIMEOUT = 5.0  # a scrape gives up on the database after this long
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
IGNORED = "-"  # the handler label of updates the middleware dropped
MIDDLEWARE = "middleware"  # the handler label of updates the middleware failed on


@dataclass
class _Handling:
    """The update being handled in this context: when it began, and whether it was counted."""

    started: float
    counted: bool = False


_handling: ContextVar[_Handling | None] = ContextVar("update_handling", default=None)


def update_kind(update: Update) -> str:
    """Telegram's name for what the update carries (``message``, ``callback_query``…)."""
    for kind in Update.ALL_TYPES:
        if getattr(update, kind, None) is not None:
            return kind
    return "other"


def handler_name(callback: Callable[..., Any]) -> str:
    """``<feature module>.<function>``, e.g. ``balance.show_balance``: few and stable labels."""
    module = getattr(callback, "__module__", None) or "?"
    name = getattr(callback, "__qualname__", None) or type(callback).__name__
    return f"{module.rsplit('.', 1)[-1]}.{name}"


@dataclass
class PacingStats:
    """What a rate limiter made requests wait for (see ``MeteredRateLimiter``)."""

    waits: int = 0  # requests our own limiter held back
    wait_seconds: float = 0.0
    throttled: int = 0  # 429 answers (RetryAfter) from Telegram
    throttled_seconds: float = 0.0  # the waits Telegram asked for


class BotMetrics:
    """One application's registry and the metrics pushed into it."""

    def __init__(self, app: App) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.instrumented = False
        r = self.registry
        self.updates_received = Counter(
            "greenpoints_bot_updates_received",
            "Updates the application took in, by Telegram update type (less the handled "
            "ones: updates no handler took)",
            ["kind"],
            registry=r,
        )
        self.updates = Counter(
            "greenpoints_bot_updates",
            "Updates handled, by update type, the handler that took them (- when the middleware "
            "dropped them, middleware when it failed on them) and outcome (ok, error, "
            "ignored, cancelled)",
            ["kind", "handler", "outcome"],
            registry=r,
        )
        self.update_seconds = Histogram(
            "greenpoints_bot_update_seconds",
            "Time from the middleware taking an update to its handler finishing, by handler",
            ["handler"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.outbox_depth = Gauge(
            "greenpoints_bot_outbox_depth",
            "Outbox rows waiting or being sent, by priority (notice: exact up to "
            f"{NOTICE_COUNT_CAP}, then that number; bulk: from the running broadcasts' counters)",
            ["priority"],
            registry=r,
        )
        self.outbox_oldest = Gauge(
            "greenpoints_bot_outbox_oldest_seconds",
            "Age of the oldest outbox row still waiting to be sent, by priority (0: none)",
            ["priority"],
            registry=r,
        )
        self.refresh_failures = Counter(
            "greenpoints_bot_outbox_depth_errors",
            "Scrapes that could not read the outbox depth from the bot's database",
            registry=r,
        )
        r.register(_BackgroundCollector(app))
        ProcessCollector(registry=r)
        self._refreshing: asyncio.Future[None] | None = None

    # --- updates --------------------------------------------------------------------------------

    def received(self, update: Update) -> None:
        """The middleware took ``update`` in: count it and start its clock."""
        self.updates_received.labels(update_kind(update)).inc()
        _handling.set(_Handling(time.monotonic()))

    def finished(self, update: object, handler: str, outcome: str) -> None:
        """The update is done with (handled, failed or dropped): count it, once, and log one
        line; a second call for the same update (a handler after the middleware failed) is
        not counted again."""
        now = time.monotonic()
        handling = _handling.get()
        if handling is not None:
            if handling.counted:
                return
            handling.counted = True
        seconds = now - handling.started if handling is not None else 0.0
        kind = update_kind(update) if isinstance(update, Update) else "other"
        self.updates.labels(kind, handler, outcome).inc()
        self.update_seconds.labels(handler).observe(seconds)
        log.info(
            "update handled: %s by %s, %s, %.1f ms",
            kind,
            handler,
            outcome,
            seconds * 1000,
            extra={"kind": kind, "handler": handler, "outcome": outcome,
                   "duration_ms": round(seconds * 1000, 3)},
        )

    # --- the outbox, at scrape time -------------------------------------------------------------

    async def refresh(self, db: BotDatabase) -> None:
        """Read the outbox depth into the gauges; concurrent scrapes share one read."""
        if self._refreshing is not None and not self._refreshing.done():
            await asyncio.shield(self._refreshing)
            return
        self._refreshing = asyncio.ensure_future(self._refresh(db))
        await asyncio.shield(self._refreshing)

    async def _refresh(self, db: BotDatabase) -> None:
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT):
                depth = await outbox_depth(db)
        except Exception as exc:
            # Absent series rather than stale numbers; /healthz says why.
            self.refresh_failures.inc()
            self.outbox_depth.clear()
            self.outbox_oldest.clear()
            log.warning("metrics: could not read the outbox depth: %s", type(exc).__name__)
            return
        for priority, rows in depth.rows.items():
            self.outbox_depth.labels(priority).set(rows)
        for priority, age in depth.oldest_seconds.items():
            self.outbox_oldest.labels(priority).set(age)


def metrics_of(app: App) -> BotMetrics:
    """The application's metrics, made on first use."""
    metrics = app.bot_data.get(METRICS_KEY)
    if not isinstance(metrics, BotMetrics):
        metrics = app.bot_data[METRICS_KEY] = BotMetrics(app)
    return metrics


Callback = Callable[[Any, Any], Coroutine[Any, Any, Any]]


def _metered(callback: Callback, metrics: BotMetrics) -> Callback:
    name = handler_name(callback)

    @functools.wraps(callback)
    async def run(update: Any, context: Any) -> Any:
        outcome = "error"
        try:
            result = await callback(update, context)
            outcome = "ok"
            return result
        except ApplicationHandlerStop:
            outcome = "ok"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            metrics.finished(update, name, outcome)

    run.__gp_metered__ = True  # type: ignore[attr-defined]
    return run


def instrument(app: App) -> BotMetrics:
    """Wrap every handler's callback (not the middleware's group) to count and time updates.

    ``build_application`` calls it once every handler is registered, so every application —
    production, console, tests — is instrumented before its first update; handlers added later
    are not wrapped. Idempotent.
    """
    metrics = metrics_of(app)
    if metrics.instrumented:
        return metrics
    for group, handlers in app.handlers.items():
        if group < 0:
            continue
        for handler in handlers:
            if not getattr(handler.callback, "__gp_metered__", False):
                handler.callback = _metered(handler.callback, metrics)
    metrics.instrumented = True
    return metrics


# --- the outbox depth ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Depth:
    rows: dict[str, int]  # priority name -> rows pending or sending
    oldest_seconds: dict[str, float]  # priority name -> age of the oldest pending row


async def outbox_depth(db: BotDatabase, cap: int = NOTICE_COUNT_CAP) -> Depth:
    """Outbox depth by priority in a handful of index reads, whatever the outbox holds.

    Notices: ``count`` over at most ``cap`` entries of the ``(state, priority, id)`` index.
    Broadcast rows: every row of a running broadcast is either still waiting or counted in its
    broadcast's sent/blocked/failed/skipped (the sender adds to those in the transaction that
    records the rows), so total minus those is exactly what waits — no row is visited.
    Oldest: the first pending row by id, one index probe per priority.
    """
    waiting = OutboxMessage.state.in_((outbox.PENDING, outbox.SENDING))
    capped = (
        select(literal(1))
        .where(waiting, OutboxMessage.priority < outbox.BULK)
        .limit(cap)
        .subquery()
    )
    outstanding = Broadcast.total - (
        Broadcast.sent + Broadcast.blocked + Broadcast.failed + Broadcast.skipped
    )
    now = utcnow()
    oldest: dict[str, float] = {}
    async with db.session() as session:
        notices = int(await session.scalar(select(func.count()).select_from(capped)) or 0)
        bulk = int(
            await session.scalar(
                select(func.coalesce(func.sum(outstanding), 0)).where(
                    Broadcast.state.in_(("enqueuing", "sending"))
                )
            )
            or 0
        )
        for name, bulk_rows in (("notice", False), ("bulk", True)):
            priority = (
                OutboxMessage.priority == outbox.BULK
                if bulk_rows
                else OutboxMessage.priority < outbox.BULK
            )
            created = await session.scalar(
                select(OutboxMessage.created_at)
                .where(OutboxMessage.state == outbox.PENDING, priority)
                .order_by(OutboxMessage.id)
                .limit(1)
            )
            oldest[name] = _age(now, created)
    return Depth({"notice": notices, "bulk": max(0, bulk)}, oldest)


def _age(now: dt.datetime, created: dt.datetime | None) -> float:
    if created is None:
        return 0.0
    if created.tzinfo is not None and now.tzinfo is None:
        created = created.replace(tzinfo=None)
    return max(0.0, (now - created).total_seconds())


# --- the background work's totals, at scrape time -------------------------------------------


_SEND_OUTCOMES = (
    ("sent", "sent"),
    ("blocked", "blocked"),
    ("failed", "failed"),
    ("skipped", "skipped"),
    ("retry", "retried"),
    ("throttled", "throttled"),
)


class _BackgroundCollector(Collector):
    """The outbox sender's, event reader's and reply limiter's running totals as metrics.

    Read when scraped from the objects that keep them, so nothing is pushed on the hot path;
    a restarted sender starts again from zero, which Prometheus reads as a counter reset.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    def describe(self) -> Iterator[Metric]:
        return self._families(None, None, None)

    def collect(self) -> Iterator[Metric]:
        background = running(self.app)
        limiter = self.app.bot.rate_limiter
        pacing = limiter.pacing if isinstance(limiter, MeteredRateLimiter) else None
        if background is None:
            return self._families(None, None, pacing)
        return self._families(background.sender, background.reader, pacing)

    def _families(self, sender: Any, reader: Any, pacing: PacingStats | None) -> Iterator[Metric]:
        stats: SenderStats = sender.stats if sender is not None else SenderStats()
        sends = CounterMetricFamily(
            "greenpoints_bot_sends",
            "Outbox sends by outcome: sent, blocked (403), failed (refused or out of retries), "
            "skipped (notices off, broadcast cancelled), retry (network error, tried again "
            "later), throttled (429, sent again after Telegram's wait)",
            labels=["outcome"],
        )
        for outcome, attribute in _SEND_OUTCOMES:
            sends.add_metric([outcome], getattr(stats, attribute))
        yield sends
        yield SummaryMetricFamily(
            "greenpoints_bot_send_request_seconds",
            "Bot API round trips of outbox sends",
            count_value=stats.requests,
            sum_value=stats.request_seconds,
        )
        yield CounterMetricFamily(
            "greenpoints_bot_outbox_recovered",
            "Rows found mid-send after a sender stopped, and sent again",
            value=stats.recovered,
        )
        waits = CounterMetricFamily(
            "greenpoints_bot_rate_limit_waits",
            "Times sending waited for a rate limit: path outbox or reply; reason telegram "
            "(a 429's retry_after), overall (our overall rate) or chat (our per-chat rate)",
            labels=["path", "reason"],
        )
        seconds = CounterMetricFamily(
            "greenpoints_bot_rate_limit_wait_seconds",
            "Seconds sending waited for a rate limit, by path and reason as the waits",
            labels=["path", "reason"],
        )
        rows: list[tuple[str, str, float, float]] = [
            ("outbox", "telegram", stats.throttled, stats.throttled_seconds),
            ("outbox", "overall", stats.window_waits, stats.window_wait_seconds),
            ("outbox", "chat", stats.chat_waits, stats.chat_wait_seconds),
        ]
        if pacing is not None:
            rows += [
                ("reply", "telegram", pacing.throttled, pacing.throttled_seconds),
                ("reply", "overall", pacing.waits, pacing.wait_seconds),
            ]
        for path, reason, count, total in rows:
            waits.add_metric([path, reason], count)
            seconds.add_metric([path, reason], total)
        yield waits
        yield seconds
        yield GaugeMetricFamily(
            "greenpoints_bot_sender_active",
            "1 while this process holds the sender lock and drains the outbox",
            value=1 if sender is not None and sender.active else 0,
        )
        yield CounterMetricFamily(
            "greenpoints_bot_ledger_events_read",
            "Ledger events read from the feed",
            value=reader.events_read if reader is not None else 0,
        )
        yield CounterMetricFamily(
            "greenpoints_bot_notices_enqueued",
            "Notices the event reader put in the outbox",
            value=reader.enqueued if reader is not None else 0,
        )
        yield GaugeMetricFamily(
            "greenpoints_bot_ledger_feed_failures",
            "Consecutive failed reads of the ledger's event feed (0: the last one worked)",
            value=reader.failures if reader is not None else 0,
        )


# --- replies' rate limiter ------------------------------------------------------------------


class MeteredRateLimiter(AIORateLimiter):
    """python-telegram-bot's ``AIORateLimiter``, counting what it makes replies wait for.

    Through its public hook (``process_request``): the time from a request entering the
    limiter to its first try is our own pacing; each ``RetryAfter`` from Telegram is a 429,
    waited out by the limiter before it tries again. Exported as the ``reply`` path of the
    rate-limit metrics when the application's bot uses this limiter.
    """

    # Below this, a request went straight through: the limiter's bookkeeping, not a wait.
    THRESHOLD = 0.001

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacing = PacingStats()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        entered = time.monotonic()
        tries = 0
        pacing = self.pacing

        async def timed(*a: Any, **kw: Any) -> Any:
            nonlocal tries
            tries += 1
            if tries == 1:
                waited = time.monotonic() - entered
                if waited >= self.THRESHOLD:
                    pacing.waits += 1
                    pacing.wait_seconds += waited
            try:
                return await callback(*a, **kw)
            except RetryAfter as exc:
                pacing.throttled += 1
                pacing.throttled_seconds += retry_after_seconds(exc)
                raise

        return await super().process_request(
            timed, args, kwargs, endpoint, data, rate_limit_args
        )

