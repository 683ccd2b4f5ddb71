"""Announcements in the demo: ``/broadcast`` by an admin reaches the console like a notice.

The Telegram runner (``bot.outbox.broadcast_runner``) enqueues an audience in the background and
redraws the admin's progress message every few seconds. The console does the same enqueueing
(``Broadcasts.enqueue_all``, the outbox sender then delivers the rows through the console's
printer), but reports progress when the demo settles after each line rather than on a timer,
so a piped transcript is the same on every run.
"""

from __future__ import annotations

import asyncio
import logging

from bot.channels.console.screen import Screen
from bot.chat.announcements import Progress, progress_text
from bot.chat.i18n import translator
from bot.services import Services

log = logging.getLogger(__name__)


class ConsoleAnnouncer:
    """``bot.chat.announcements.Announcer`` for the console (``Services.announcer``)."""

    def __init__(self, services: Services, screen: Screen) -> None:
        self.services = services
        self.screen = screen
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def launch(self, broadcast_id: int) -> None:
        """Enqueue this broadcast's audience in the background (idempotent)."""
        task = self._tasks.get(broadcast_id)
        if task is None or task.done():
            self._tasks[broadcast_id] = asyncio.create_task(self._enqueue(broadcast_id))

    async def _enqueue(self, broadcast_id: int) -> None:
        try:
            await self.services.broadcasts.enqueue_all(broadcast_id)
        except Exception:
            log.exception(
                "enqueueing broadcast %s failed; it resumes at the next start", broadcast_id
            )

    async def start(self) -> None:
        """Resume what was running when the demo last stopped."""
        for broadcast_id in await self.services.broadcasts.active():
            self.launch(broadcast_id)

    async def enqueued(self) -> None:
        """Wait until every audience being enqueued is fully in the outbox."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks)

    async def report(self) -> None:
        """Print the progress of each broadcast that has just finished (once: it is marked
        done here, as the Telegram runner's report does)."""
        for broadcast_id in await self.services.broadcasts.active():
            progress = await self.services.broadcasts.finish_if_done(broadcast_id)
            if progress is not None and progress.state == "done":
                await self.show(progress)

    async def show(self, progress: Progress) -> None:
        profile = await self.services.chats.get(progress.admin)
        t = translator(profile.locale if profile else None)
        self.screen.show_text(progress_text(t, progress))

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
