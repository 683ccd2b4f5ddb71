"""Keeps announcements moving: enqueues audiences in the background and edits each admin's
progress message as the sender reports outcomes. Resumes whatever was running at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram.error import BadRequest, TelegramError

from bot.channels.telegram.context import SERVICES_KEY, App
from bot.chat.announcements import Progress, progress_text
from bot.chat.i18n import translator
from bot.outbox.broadcasts import Broadcasts
from bot.services import Services

log = logging.getLogger(__name__)

RUNNER_KEY = "broadcast_runner"
REPORT_EVERY = 3.0  # seconds between progress edits (Telegram allows ~1 edit/s per chat)


class BroadcastRunner:
    def __init__(self, app: App, services: Services) -> None:
        self.app = app
        self.services = services
        self.broadcasts = Broadcasts(services.db)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._reporter: asyncio.Task[None] | None = None
        self._last_text: dict[int, str] = {}

    async def start(self) -> None:
        for broadcast_id in await self.broadcasts.active():
            self.launch(broadcast_id)
        self._reporter = asyncio.create_task(self._report_forever())

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *([self._reporter] if self._reporter else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def enqueued(self) -> None:
        """Wait for every audience being enqueued right now to be fully in the outbox."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks)

    def launch(self, broadcast_id: int) -> None:
        """Enqueue this broadcast's audience in the background (idempotent)."""
        task = self._tasks.get(broadcast_id)
        if task is None or task.done():
            self._tasks[broadcast_id] = asyncio.create_task(self._enqueue(broadcast_id))

    async def _enqueue(self, broadcast_id: int) -> None:
        try:
            await self.broadcasts.enqueue_all(broadcast_id)
        except Exception:
            log.exception(
                "enqueueing broadcast %s failed; it resumes at the next start", broadcast_id
            )

    async def _report_forever(self) -> None:
        while True:
            try:
                await self.report()
            except Exception:
                log.exception("broadcast progress report failed")
            await asyncio.sleep(REPORT_EVERY)

    async def report(self) -> None:
        """Edit every active broadcast's progress message once; mark finished ones done."""
        for broadcast_id in await self.broadcasts.active():
            progress = await self.broadcasts.finish_if_done(broadcast_id)
            if progress is not None:
                await self.show(progress)

    async def show(self, progress: Progress) -> None:
        channel, address = progress.admin
        if progress.progress_message_id is None or channel != "telegram":
            return
        profile = await self.services.chats.get(progress.admin)
        t = translator(profile.locale if profile else None)
        text = progress_text(t, progress)
        if self._last_text.get(progress.id) == text:
            return
        try:
            await self.app.bot.edit_message_text(
                text, chat_id=int(address), message_id=progress.progress_message_id
            )
            self._last_text[progress.id] = text
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                log.warning("could not update progress of broadcast %s: %s", progress.id, exc)
        except TelegramError as exc:
            log.warning("could not update progress of broadcast %s: %s", progress.id, exc)


def runner(app: App) -> BroadcastRunner:
    existing = app.bot_data.get(RUNNER_KEY)
    if isinstance(existing, BroadcastRunner):
        return existing
    services = app.bot_data[SERVICES_KEY]
    assert isinstance(services, Services)
    created = BroadcastRunner(app, services)
    app.bot_data[RUNNER_KEY] = created
    return created


async def start_runner(app: App) -> None:
    await runner(app).start()


async def stop_runner(app: App) -> None:
    await runner(app).stop()
