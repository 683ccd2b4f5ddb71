"""What runs beside the features: the ledger event reader and the outbox sender, on any channel.

Telegram starts them with its application (``bot.channels.telegram.background``), the console
with the demo; ``catch_up`` and the sender's ``settled`` let everything pending arrive now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from bot.outbox.broadcasts import Broadcasts, record_outcomes
from bot.outbox.event_reader import EventReader, ReaderTuning
from bot.outbox.sender import ApiCaller, OutboxSender, SenderTuning
from bot.services import Services
from ledger_client.errors import LedgerClientError

log = logging.getLogger(__name__)

class OwnRequest(Protocol):
    """A connection pool made for the sender alone, shut down with it."""

    async def shutdown(self) -> None: ...


@dataclass
class Background:
    reader: EventReader
    sender: OutboxSender
    tasks: list[asyncio.Task[None]]
    own_request: OwnRequest | None


async def start_background(
    services: Services,
    bot: ApiCaller,
    *,
    own_request: OwnRequest | None = None,
    sender_tuning: SenderTuning | None = None,
    reader_tuning: ReaderTuning | None = None,
) -> Background:
    """Start the outbox sender (sending through ``bot``) and the ledger event reader."""
    settings = services.settings
    sender = OutboxSender(
        services.db,
        services.chats,
        bot,
        rate_overall=settings.rate_overall,
        rate_per_chat=settings.rate_per_chat,
        tuning=sender_tuning,
        resolvers={"broadcast": Broadcasts(services.db).resolve},
        on_outcomes=record_outcomes,
        channel=services.channel,
    )
    reader = EventReader(services, tuning=reader_tuning, on_enqueued=sender.wake)
    try:
        # Fix the starting point now, so nothing that happens after start-up is missed.
        await reader.position()
    except LedgerClientError as exc:
        log.warning("event feed: no starting point yet (%s); the reader will retry", exc)
    tasks = [
        asyncio.create_task(sender.run(), name="outbox-sender"),
        asyncio.create_task(reader.run(), name="event-reader"),
    ]
    return Background(reader, sender, tasks, own_request)


async def stop_background(background: Background) -> None:
    background.reader.stop()
    await background.sender.stop()
    done, pending = await asyncio.wait(background.tasks, timeout=60)
    for task in pending:
        task.cancel()
    for task in [*done, *pending]:
        with contextlib.suppress(asyncio.CancelledError):
            if (error := await _result(task)) is not None:
                log.error("background task %s ended with %r", task.get_name(), error)
    if background.own_request is not None:
        await background.own_request.shutdown()


async def catch_up(background: Background) -> None:
    """Read every pending ledger event now (``settle`` without announcements)."""
    try:
        await background.reader.catch_up()
    except LedgerClientError as exc:
        log.warning("event feed: could not catch up (%s)", exc)


async def _result(task: asyncio.Task[None]) -> BaseException | None:
    try:
        await task
    except Exception as exc:
        return exc
    return None
