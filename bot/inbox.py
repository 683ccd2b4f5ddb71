"""Where free text and photos go: the step a pending conversation waits for, or the fallback.

Feature modules register the flow kinds they own; the one inbox handler looks up the chat's
pending flow (kept in the database, so it survives restarts) and hands the message over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import Update

from bot.context import GPContext
from bot.storage.flows import Pending

FlowStep = Callable[[Update, GPContext, Pending], Awaitable[None]]
Catcher = Callable[[Update, GPContext], Awaitable[bool]]

FLOW_STEPS: dict[str, FlowStep] = {}
# Tried in order when no flow is pending; each returns True if it took the message.
CATCHERS: list[Catcher] = []


def on_flow(kind: str, step: FlowStep) -> None:
    FLOW_STEPS[kind] = step


def catch(catcher: Catcher) -> None:
    if catcher not in CATCHERS:
        CATCHERS.append(catcher)


async def route(update: Update, context: GPContext) -> bool:
    """True if a pending flow or a catcher took the message."""
    chat_id = context.need_profile().chat_id
    pending = await context.services.flows.get(chat_id)
    if pending is not None and pending.kind in FLOW_STEPS:
        await FLOW_STEPS[pending.kind](update, context, pending)
        return True
    for catcher in CATCHERS:
        if await catcher(update, context):
            return True
    return False
