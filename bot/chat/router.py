"""Which feature answers an event: routes, named states and catchers, registered by the features.

Routes are tried in registration order and the first that matches answers (commands and choices
by name, then the catch-all ones a fallback registers last). Free text and photos first go to the
person's named state, if they are in one: a feature registers its states by name (the till's
``bill`` and ``redeem``) and starts one by storing a flow of that name (``FlowStore``), so the
conversation survives a restart and a second process. With no state, catchers (a typed code, a
staff photo) may take the message before the matching route does.
A channel asks ``find`` for each event and hands the match to ``dispatch``.
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
from bot.chat.flows import Pending
from bot.chat.turn import Turn

Feature = Callable[[Any, Turn], Awaitable[None]]
StateFeature = Callable[[Text | Photo, Turn, Pending], Awaitable[None]]
LocationStateFeature = Callable[[Location, Turn, Pending], Awaitable[None]]
Catcher = Callable[[Text | Photo, Turn], Awaitable[bool]]
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
        self.states: dict[str, StateFeature] = {}
        self.location_states: dict[str, LocationStateFeature] = {}
        self.catchers: list[Catcher] = []

    def state(self, name: str, feature: StateFeature) -> None:
        """Free text and photos go to ``feature`` while the person's flow is ``name``."""
        if name in self.states:
            raise ValueError(f"state {name!r} registered twice")
        self.states[name] = feature

    def location_state(self, name: str, feature: LocationStateFeature) -> None:
        """A shared location goes to ``feature`` while the person's flow is ``name`` (a place
        asked for, e.g. /circle's); otherwise locations take their route (/nearby)."""
        if name in self.location_states:
            raise ValueError(f"location state {name!r} registered twice")
        self.location_states[name] = feature

    def catch(self, catcher: Catcher) -> None:
        """Offer free text and photos outside any state to ``catcher`` (True: taken)."""
        self.catchers.append(catcher)

    def add(self, kind: RouteKind, key: str | None, feature: Feature) -> None:
        self.routes.append(Route(kind, key, feature))

    def command(self, name: str, feature: Feature) -> None:
        self.add("command", name, feature)

    def choice(self, kind: str, feature: Feature) -> None:
        self.add("choice", kind, feature)

    def find(self, event: Event) -> Route | None:
        return next((route for route in self.routes if route.matches(event)), None)

    async def dispatch(self, route: Route, event: Event, turn: Turn) -> None:
        """Run the feature ``route`` names, unless a state or catcher takes the event first."""
        if isinstance(event, Location) and self.location_states:
            pending = await turn.services.flows.get(turn.profile.key)
            located = self.location_states.get(pending.kind) if pending is not None else None
            if located is not None and pending is not None:
                await located(event, turn, pending)
                return
        if isinstance(event, Text | Photo) and (not isinstance(event, Text) or event.text):
            pending = await turn.services.flows.get(turn.profile.key)
            if pending is not None:
                step = self.states.get(pending.kind)
                if step is not None:
                    await step(event, turn, pending)
                    return
            for catcher in self.catchers:
                if await catcher(event, turn):
                    return
        await route.feature(event, turn)
