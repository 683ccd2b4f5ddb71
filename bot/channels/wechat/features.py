"""The core's features behind the WeChat endpoint: ``features_runner`` is the ``run`` that
``WeChatConversation`` hands each event to (issue 10: the same features on every channel).

Per event: the person's profile is found (created on first contact) by (channel, openid), the
routed feature fills a turn, and its replies are returned for the endpoint to render as the
passive reply and service messages. An unfollow marks the chat blocked (the outbox then skips it
until the person follows again, as the Telegram sender does after a 403). A ledger outage or a
bug is said to the person in their language (``bot.chat.failures``), never raised to the
endpoint, whose only answer to an exception would be silence.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.chat.channel import WECHAT
from bot.chat.events import Event, Unfollow
from bot.chat.middleware import OnMenu, run_turn
from bot.chat.replies import Reply
from bot.chat.router import Router
from bot.services import Services

log = logging.getLogger(__name__)

Run = Callable[[Event], Awaitable[Sequence[Reply]]]



def features_runner(services: Services, router: Router, on_menu: OnMenu | None = None) -> Run:
    """A ``run(event) -> replies`` over ``router`` (``bot.features.neutral_router()``).
    ``on_menu(profile, change)`` runs after a feature asked for the person's menu to be redrawn
    (their role or language changed): on WeChat, retagging them (``tagging.Tagger``)."""

    async def run(event: Event) -> Sequence[Reply]:
        person = event.person
        if isinstance(event, Unfollow):
            await services.chats.mark_blocked([person.key])
            return []
        return await run_turn(services, router, event, WECHAT, on_menu)

    return run
