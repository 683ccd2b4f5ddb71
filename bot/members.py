"""The ledger member behind a chat, resolved once and remembered in the bot's database."""

from __future__ import annotations

from bot.context import GPContext


async def member_id(context: GPContext) -> int:
    """The person's member id, creating the member in the ledger on first need.

    Raises the ledger client's ``Unavailable`` when the ledger cannot be reached; the error
    handler tells the person to try again shortly.
    """
    return (await resolve(context))[0]


async def resolve(context: GPContext) -> tuple[int, bool]:
    """The member id and whether this call created the member, so /start can tell a first
    visit from a return (also when the bot's own record of the chat was lost)."""
    profile = context.need_profile()
    if profile.member_id is not None:
        return profile.member_id, False
    channel, external_id = profile.identity
    member = await context.services.ledger.resolve_member(
        channel, external_id, profile.locale, profile.display_name
    )
    linked = await context.services.chats.link_member(profile.chat_id, member.id)
    if linked is not None:
        context.profile = linked
    return member.id, member.created
