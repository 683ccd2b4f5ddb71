"""What runs around every feature on every channel: who is this, in which language, and what to
say when the turn fails (DESIGN.md "The conversation core"; an i18n middleware as aiogram's).

A channel turns its platform's update into an event and renders replies; in between, the profile
is found (created on first contact) by the person's (channel, address) with the language their
app reports as the starting point, the turn is built, the routed feature runs, and a ledger
outage or a bug becomes one short reply in the person's language instead of silence. The
console and WeChat run the whole of it (``run_turn``); Telegram's python-telegram-bot dispatch
finds the profile here (``find_profile``) and reports failures in its error handler.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.chat.channel import Capabilities
from bot.chat.events import Event, Person
from bot.chat.failures import broken_text, busy_text
from bot.chat.i18n import Translator, negotiate, translator
from bot.chat.replies import Reply, TextReply
from bot.chat.router import Router
from bot.chat.turn import MenuChange, Turn
from bot.services import Services
from bot.storage.chats import Profile
from ledger_client import errors as ledger_errors

log = logging.getLogger(__name__)

OnMenu = Callable[[Profile, MenuChange], Awaitable[None]]
"""Runs after a feature asked for the person's menu to be redrawn (their role or language
changed): on WeChat, retagging them (``bot.channels.wechat.tagging``)."""

NAME_KEPT = 64  # characters of a platform's display name kept in the profile


async def find_profile(services: Services, person: Person) -> tuple[Profile, Translator]:
    """The person's profile and their language: the one they chose, else their app's
    (``negotiate``). Raises what the bot's database raises."""
    locale = negotiate(person.locale_hint)
    name = person.name[:NAME_KEPT] if person.name else None
    # Keyed by the bot process's channel (the person's own on every channel; a bench may drive
    # Telegram's people through the console).
    profile = await services.chats.seen((services.channel, person.address), locale, name or None)
    return profile, translator(profile.locale)


async def run_turn(
    services: Services,
    router: Router,
    event: Event,
    capabilities: Capabilities,
    on_menu: OnMenu | None = None,
) -> Sequence[Reply]:
    """The replies to ``event``: the routed feature's, or one saying the ledger is busy
    (``Unavailable``, ``Throttled``) or that something broke. Never raises; an event no route
    takes gets no reply."""
    person = event.person
    try:
        profile, t = await find_profile(services, person)
    except Exception:
        log.exception("%s: no profile", person.channel)
        return [TextReply(broken_text(translator(negotiate(person.locale_hint))))]
    route = router.find(event)
    if route is None:
        return []
    turn = Turn(person, services, profile, t, capabilities)
    try:
        await router.dispatch(route, event, turn)
    except (ledger_errors.Unavailable, ledger_errors.Throttled) as exc:
        log.warning("%s: ledger unavailable: %s", person.channel, exc)
        return [TextReply(busy_text(turn.t))]
    except Exception:
        log.exception("%s: the turn failed", person.channel)
        return [TextReply(broken_text(turn.t))]
    if turn.menu is not None and on_menu is not None:
        await on_menu(turn.profile, turn.menu)
    return turn.replies
