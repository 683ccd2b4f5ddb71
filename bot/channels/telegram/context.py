"""The context every handler receives: services, the person's profile and their language.

The profile and translator are set once per update by ``bot.channels.telegram.middleware``
before any handler runs, as an i18n middleware would, so handlers never look a language up
themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from telegram.ext import Application, CallbackContext, ExtBot

from bot.chat.events import Event
from bot.chat.i18n import Translator, translator
from bot.services import Services
from bot.storage.chats import Profile

SERVICES_KEY = "services"


class GPContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application, chat_id, user_id)
        self.profile: Profile | None = None
        self.t: Translator = translator(None)
        self.event: Event | None = None  # the neutral event a chat-core route matched

    @property
    def services(self) -> Services:
        services = self.application.bot_data[SERVICES_KEY]
        assert isinstance(services, Services)
        return services

    def need_profile(self) -> Profile:
        if self.profile is None:
            raise RuntimeError("handler ran without the profile middleware")
        return self.profile


App = Application[Any, Any, Any, Any, Any, Any]
Hook = Callable[[App], Awaitable[None]]
"""Work started with the application and stopped before it (``launch``/``halt`` in
``bot.channels.telegram.app``)."""
