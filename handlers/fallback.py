"""Everything no feature command took: pending conversations first, then a helpful reply.

Registered last, so these run only when no other route matched; free text and photos reach
``anything_else`` only when no named state or catcher took them (``bot.chat.router``).
Service messages (a pin, an auto-delete timer, "allowed to write", a web app's data) are
Telegram reporting that something happened, not the person talking to the bot, so they get no
reply: answering "I can't chat much" to someone who pinned a message would be nonsense.
"""

from __future__ import annotations

from bot.chat.events import Choice, Command, Photo, Text
from bot.chat.replies import Toast
from bot.chat.router import Router
from bot.chat.turn import Turn


async def unknown_command(event: Command, turn: Turn) -> None:
    turn.text(turn.t._("I don't know that command. /help shows what I can do."))


async def anything_else(event: Text | Photo, turn: Turn) -> None:
    """Reached when no state or catcher took the message (``Router.dispatch``)."""
    t = turn.t
    if isinstance(event, Photo):
        text = t._(
            "Thanks for the picture! Only alliance staff can scan codes from photos. "
            "/qr shows your own code."
        )
    else:
        text = t._(
            "I'm a points bot, so I can't chat much. /balance, /nearby and /qr are "
            "what people use most; /help lists everything."
        )
    turn.text(text)


async def stale_button(event: Choice, turn: Turn) -> None:
    turn.say(Toast(turn.t._("This button has expired.")))


def routes(router: Router) -> None:
    router.add("command", None, unknown_command)
    router.add("text", None, anything_else)
    router.add("photo", None, anything_else)
    router.add("choice", None, stale_button)
