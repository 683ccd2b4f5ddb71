"""Which feature answers an event: routes registered by the features themselves.

Routes are tried in registration order and the first that matches answers, so a feature that
must see an event first (a named state such as the till's "bill") registers before the catch-all
ones. A channel asks ``find`` for each event; an event no route takes is the channel's to ignore.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from bot.chat.choice_data import kind_of
from bot.chat.events import (
    Choice,
    Command,
    Event,
    Follow,
    Location,
    Photo,
    Scan,
    Text,
    Unfollow,
)
from bot.chat.turn import Turn

Feature = Callable[[Any, Turn], Awaitable[None]]
RouteKind = Literal["command", "choice", "location", "photo", "text", "scan", "follow", "unfollow"]

_EVENT_KIND: dict[type, RouteKind] = {
    Command: "command",
    Choice: "choice",
    Location: "location",
    Photo: "photo",
    Text: "text",
    Scan: "scan",
    Follow: "follow",
    Unfollow: "unfollow",
}


@dataclass(frozen=True, slots=True)
class Route:
    """``kind`` of event and, for commands and choices, the command name or the choice's kind
    (``None``: any)."""

    kind: RouteKind
    key: str | None
    feature: Feature

    def matches(self, event: Event) -> bool:
        if _EVENT_KIND[type(event)] != self.kind:
            return False
        if self.key is None:
            return True
        if isinstance(event, Command):
            return event.name == self.key
        if isinstance(event, Choice):
            return kind_of(event.data) == self.key
        return False


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, kind: RouteKind, key: str | None, feature: Feature) -> None:
        self.routes.append(Route(kind, key, feature))

    def command(self, name: str, feature: Feature) -> None:
        self.add("command", name, feature)

    def choice(self, kind: str, feature: Feature) -> None:
        self.add("choice", kind, feature)

    def find(self, event: Event) -> Route | None:
        return next((route for route in self.routes if route.matches(event)), None)
