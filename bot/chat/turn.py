"""One turn of a conversation: the event's person, their profile and language, the services, and
the replies a feature says back.

A channel builds the turn once per incoming event (after its middleware found the profile and
negotiated the language, as an i18n middleware does), hands it with the event to the routed
feature, then renders ``turn.replies`` in order. A feature therefore never sends anything
itself and never knows which platform it is talking to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.chat.channel import Capabilities
from bot.chat.events import Person
from bot.chat.i18n import Translator, translator
from bot.chat.replies import ChoiceButton, Reply, TextReply, rows
from bot.services import Services
from bot.storage.chats import Profile as Profile  # re-exported: features name a profile


@dataclass(frozen=True, slots=True)
class MenuChange:
    """The person's command menu should be redrawn for their language and role (Telegram sets a
    per-chat command list; WeChat would retag the person)."""

    staff: bool


@dataclass
class Turn:
    """What a feature works with. ``replies`` collects what it says, in order; ``menu`` asks the
    channel to redraw the person's menu after the replies. ``capabilities`` are the person's
    channel's, for features that lay out stored data in pages (``bot.chat.paging``)."""

    person: Person
    services: Services
    profile: Profile
    t: Translator
    capabilities: Capabilities
    replies: list[Reply] = field(default_factory=list)
    menu: MenuChange | None = None

    def say(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def text(
        self,
        text: str,
        choices: Sequence[Sequence[ChoiceButton]] = (),
        *,
        replaces: bool = False,
    ) -> None:
        """Say a text with rows of choices (empty rows dropped)."""
        self.replies.append(
            TextReply(text, rows(*(line for line in choices if line)), replaces=replaces)
        )

    def switch_profile(self, profile: Profile) -> None:
        """Continue the turn with an updated profile (and its language, if it changed)."""
        self.profile = profile
        self.t = translator(profile.locale)

    def refresh_menu(self, *, staff: bool) -> None:
        self.menu = MenuChange(staff=staff)

    async def resolve_member(self) -> tuple[int, bool]:
        """The member id and whether this call created the member, so /start can tell a first
        visit from a return (also when the bot's own record of the chat was lost). Raises the
        ledger client's ``Unavailable`` when the ledger cannot be reached."""
        profile = self.profile
        if profile.member_id is not None:
            return profile.member_id, False
        channel, external_id = profile.identity
        member = await self.services.ledger.resolve_member(
            channel, external_id, profile.locale, profile.display_name
        )
        linked = await self.services.chats.link_member(profile.key, member.id)
        if linked is not None:
            self.profile = linked
        return member.id, member.created

    async def member_id(self) -> int:
        """The person's member id, creating the member in the ledger on first need."""
        return (await self.resolve_member())[0]
