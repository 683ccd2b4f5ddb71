"""The WeChat channel's outbox sender: drains the rows of WeChat chats (neutral notices, issue 9)
as template messages through ``WeChatChannel.notify`` (WECHAT.md rule 3), under the wechat
sender lock, beside Telegram's sender (one sender per channel, issue 10).

It also makes announcements' mass sends: a broadcast's one WeChat row (``bot.outbox.mass_sends``)
becomes ``outbound.announce`` under the broadcast's ``clientmsgid`` (``sent`` once WeChat took it
or had it already, ``failed`` when the month's 4 are used or WeChat has no quota, ``skipped``
when the broadcast was cancelled). A per-person announcement row (enqueued before WeChat
followers got mass sends) is ``skipped``, not failed.

A notice row's outcome: ``sent``; ``blocked`` when the person unfollowed (the chat is marked blocked
until they follow again); ``pending`` again at the quota's reset when the day's template quota is
used up (45009); ``failed`` for what no retry mends (no template configured for the kind, a row
that is not a notice); ``skipped`` when the person turned notices off.

It sleeps until ``wake`` (this process's event reader calls it after enqueueing, as the Telegram
sender is woken) instead of looking every second; a slow safety poll still finds rows another
process enqueued (its reader may have read the event first) and rows deferred to a later time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

import aiohttp

from bot.channels.wechat.adapter import CHANNEL
from bot.channels.wechat.api import WeChatApiError
from bot.channels.wechat.channel import NoticeDeferred, WeChatChannel
from bot.channels.wechat.outbound import AnnounceOutcome, announce
from bot.chat.channel import ChannelError, PersonGone
from bot.chat.events import Person
from bot.chat.replies import Notice
from bot.outbox.broadcasts import Broadcasts, record_outcomes
from bot.outbox.event_reader import NOTICE_METHOD
from bot.outbox.mass_sends import MASS_METHOD, client_msg_id
from bot.storage import outbox
from bot.storage.chats import ChatStore, utcnow
from bot.storage.db import BotDatabase
from bot.storage.locks import SenderLock, sender_lock
from bot.storage.outbox import Claimed, Outcome

log = logging.getLogger(__name__)
MASS_RETRY = dt.timedelta(minutes=1)  # after a mass send call whose answer was lost


@dataclass
class WeChatSenderTuning:
    batch: int = 100  # rows per claim
    # Seconds between looks when the outbox had nothing and nobody woke the sender: only rows
    # another process enqueued, or deferred ones coming due, wait this long.
    idle_poll: float = 10.0
    lock_retry: float = 5.0  # seconds between tries for the lock another process holds


class WeChatNoticeSender:
    def __init__(
        self,
        db: BotDatabase,
        chats: ChatStore,
        channel: WeChatChannel,
        *,
        tuning: WeChatSenderTuning | None = None,
        lock: SenderLock | None = None,
    ) -> None:
        self.db = db
        self.chats = chats
        self.channel = channel
        self.tuning = tuning or WeChatSenderTuning()
        self.lock = lock or sender_lock(db, CHANNEL)
        self._stop = asyncio.Event()
        self._poke = asyncio.Event()  # set by wake and stop; cleared when the loop wakes

    async def drain_once(self) -> int:
        """Claim and send one batch of due WeChat rows; returns how many were claimed. Call
        only while holding the lock (``run`` does)."""
        async with self.db.session() as session:
            rows = await outbox.claim(session, self.tuning.batch, channel=CHANNEL)
            states = await outbox.chat_states(session, [r.key for r in rows])
        outcomes = [await self._send(row, states.get(row.key)) for row in rows]
        if outcomes:
            async with self.db.session() as session:
                await outbox.record(session, outcomes, utcnow())
                await record_outcomes(session, outcomes)
        gone = sorted({o.row.key for o in outcomes if o.state == outbox.BLOCKED})
        if gone:
            await self.chats.mark_blocked(gone)
        return len(rows)

    async def _announce(self, row: Claimed) -> Outcome:
        assert row.broadcast_id is not None
        content = (await Broadcasts(self.db).contents({row.broadcast_id}))[row.broadcast_id]
        if content is None:
            return Outcome(row, outbox.SKIPPED, "broadcast cancelled")
        _method, params = content
        # A photo's file is Telegram's (a file id): WeChat followers get its caption.
        text = str(params.get("text") or params.get("caption") or "")
        try:
            result = await announce(
                self.channel.api,
                self.db,
                text,
                client_msg_id(row.broadcast_id),
                broadcast_id=row.broadcast_id,
            )
        except WeChatApiError as exc:
            return Outcome(row, outbox.FAILED, str(exc)[:200], attempts=1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Unknown whether WeChat took it: the retry asks again under the same clientmsgid.
            return Outcome(
                row, outbox.PENDING, f"{type(exc).__name__}: {exc}"[:200],
                not_before=utcnow() + MASS_RETRY, attempts=row.attempts + 1,
            )
        if result.outcome in {AnnounceOutcome.SENT, AnnounceOutcome.ALREADY}:
            return Outcome(row, outbox.SENT)
        return Outcome(row, outbox.FAILED, result.outcome.value, attempts=1)

    async def _send(self, row: Claimed, state: outbox.ChatState | None) -> Outcome:
        if row.method == MASS_METHOD and row.broadcast_id is not None:
            return await self._announce(row)
        if row.broadcast_id is not None:
            return Outcome(row, outbox.SKIPPED, "WeChat followers get announcements by mass send")
        if state is not None and state.blocked:
            return Outcome(row, outbox.BLOCKED, "the person has unfollowed")
        if state is not None and not state.notices:
            return Outcome(row, outbox.SKIPPED, "notices are off")
        if row.method != NOTICE_METHOD:
            return Outcome(row, outbox.FAILED, f"not a notice: {row.method}", attempts=1)
        profile = await self.chats.get(row.key)
        try:
            notice = Notice(str(row.payload["kind"]), dict(row.payload.get("fields") or {}))
            await self.channel.notify(
                Person(CHANNEL, row.address), notice, profile.locale if profile else "zh_Hans"
            )
        except PersonGone as exc:
            return Outcome(row, outbox.BLOCKED, str(exc))
        except NoticeDeferred as exc:
            retry_at = exc.retry_at if isinstance(exc.retry_at, dt.datetime) else None
            return Outcome(
                row, outbox.PENDING, str(exc), not_before=retry_at, attempts=row.attempts
            )
        except (ChannelError, KeyError, ValueError) as exc:
            return Outcome(row, outbox.FAILED, f"{type(exc).__name__}: {exc}", attempts=1)
        return Outcome(row, outbox.SENT)

    async def run(self) -> None:
        """Hold the wechat sender lock (waiting while another process has it), return rows
        a dead predecessor left ``sending``, then drain until ``stop``."""
        while not await self.lock.acquire():
            if await self._wait(self.tuning.lock_retry):
                return
        try:
            async with self.db.session() as session:
                await outbox.recover(session, utcnow() + dt.timedelta(seconds=1), CHANNEL)
            while not self._stop.is_set():
                try:
                    claimed = await self.drain_once()
                except Exception:
                    log.exception("wechat outbox: a batch failed; trying again shortly")
                    claimed = 0
                if not claimed and await self._wait(self.tuning.idle_poll):
                    return
        finally:
            await self.lock.release()

    async def _wait(self, seconds: float) -> bool:
        """Wait ``seconds``, or until woken or stopped; True if stopped. A wake that came while
        a batch was being sent is not lost: the event stays set until this wait sees it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._poke.wait(), seconds)
        self._poke.clear()
        return self._stop.is_set()

    def wake(self) -> None:
        """Look for rows now: something was just enqueued (``EventReader.on_enqueued``)."""
        self._poke.set()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
