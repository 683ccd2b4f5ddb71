"""What runs beside the handlers: the ledger event reader and the outbox sender.

(The outbox issue fills these in; until then the bot only answers.) ``settle`` is what the
console and the tests call to let everything pending arrive now.
"""

from __future__ import annotations

from bot.app import Hook
from bot.context import App
from bot.services import Services


def hooks(services: Services) -> tuple[list[Hook], list[Hook]]:
    return [], []


async def settle(app: App) -> None:
    return None
