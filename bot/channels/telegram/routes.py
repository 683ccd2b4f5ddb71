"""The chat core's routes as python-telegram-bot handlers.

Each route becomes one PTB handler, in the router's order, so PTB's dispatch (concurrency, error
handler, metrics with one label per feature function: ``balance.show_balance``) stays. The
middleware (group -1) has already found the profile and language; here the update becomes an
event, the feature fills a turn, and the ``TelegramChannel`` answers with the turn's replies.
"""

from __future__ import annotations

import functools
from typing import Any

from telegram import Update
from telegram.ext import Application, BaseHandler

from bot.channels.telegram.channel import TelegramChannel
from bot.channels.telegram.context import App, GPContext
from bot.channels.telegram.events import event_of
from bot.channels.telegram.menus import refresh_chat_menu
from bot.chat.events import Event
from bot.chat.router import Route, Router
from bot.chat.turn import Turn


class RouteHandler(BaseHandler[Update, GPContext, None]):
    """Matches the updates whose neutral event ``route`` takes; hands the event on."""

    def __init__(self, channel: TelegramChannel, router: Router, route: Route) -> None:
        super().__init__(_bridge(channel, router, route))
        self.route = route

    def check_update(self, update: object) -> Event | None:
        if not isinstance(update, Update):
            return None
        event = event_of(update, update.get_bot())
        return event if event is not None and self.route.matches(event) else None

    def collect_additional_context(
        self,
        context: GPContext,
        update: Update,
        application: Application[Any, Any, Any, Any, Any, Any],
        check_result: Any,
    ) -> None:
        context.event = check_result


def _bridge(channel: TelegramChannel, router: Router, route: Route) -> Any:
    feature = route.feature

    @functools.wraps(feature)
    async def run(update: Update, context: GPContext) -> None:
        event = context.event
        assert event is not None
        turn = Turn(
            event.person, context.services, context.need_profile(), context.t, channel.capabilities
        )
        await router.dispatch(route, event, turn)
        context.profile, context.t = turn.profile, turn.t
        await channel.answer(event, turn.replies)
        if turn.menu is not None:
            profile = turn.profile
            await refresh_chat_menu(
                channel.bot,
                int(event.person.address),
                profile.locale,
                chosen=profile.locale_chosen,
                staff=turn.menu.staff,
                admin=context.services.is_admin(event.person.key),
            )

    return run


def add_routes(app: App, router: Router, routes: list[Route]) -> TelegramChannel:
    """One handler per route, all answering through one ``TelegramChannel`` on the
    application's bot (its rate limiter included), which is returned."""
    channel = TelegramChannel(app.bot)
    for route in routes:
        app.add_handler(RouteHandler(channel, router, route))
    return channel
