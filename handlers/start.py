"""/start (with or without a deep-link payload) and /help."""

from __future__ import annotations

from bot.chat.events import Command, Follow, Scan
from bot.chat.i18n import Translator
from bot.chat.router import Router
from bot.chat.turn import Turn
from handlers.merchant import open_deep_link


def help_text(t: Translator) -> str:
    return "\n".join(
        [
            t._("Here is what I can do:"),
            "",
            t._("/balance — your points, their value and your vouchers"),
            t._("/nearby — alliance merchants within a 15-minute walk"),
            t._("/qr — a redemption code to show at the till"),
            t._("/pool — the points pool and point price, public, with their history"),
            t._("/language — 简体中文 · 繁體中文 · English"),
            t._("/settings — voucher and points notices on or off"),
            "",
            t._(
                "Points come only from purchases at alliance merchants; "
                "they cannot be bought, sold or given to others."
            ),
        ]
    )


async def start(event: Command, turn: Turn) -> None:
    await greet(turn, "")


async def followed(event: Follow, turn: Turn) -> None:
    """Following the account (WeChat ``subscribe``) greets as ``/start`` does (issue 10)."""
    await greet(turn, "")


async def scanned(event: Scan, turn: Turn) -> None:
    """A payload from a link or code: a redemption code or staff invite, else the greeting."""
    if not await open_deep_link(turn, event.payload):
        await greet(turn, event.payload)


async def greet(turn: Turn, payload: str) -> None:
    t = turn.t
    services = turn.services
    _member, created = await turn.resolve_member()
    profile = turn.profile
    # Asked before anything is said, so a ledger outage gets one "try again" and no half reply.
    staff = await services.ledger.staff_lookup(*profile.identity) is not None
    name = profile.display_name
    if created:
        greeting = (
            t._("Welcome to Green Points, {name}!").format(name=name)
            if name
            else t._("Welcome to Green Points!")
        )
    else:
        greeting = t._("Welcome back, {name}!").format(name=name) if name else t._("Welcome back!")
    lines = [greeting]
    if payload:
        lines.insert(0, t._("That link is not one I know, so here is the start instead."))
    lines += [
        t._(
            "Earn green consumption points at every alliance merchant and turn them into "
            "vouchers that any alliance merchant accepts."
        ),
        "",
        help_text(t),
    ]
    turn.text("\n".join(lines))
    turn.refresh_menu(staff=staff)


async def help_command(event: Command, turn: Turn) -> None:
    turn.text(help_text(turn.t))


def routes(router: Router) -> None:
    router.command("start", start)
    router.add("scan", None, scanned)
    router.add("follow", None, followed)
    router.command("help", help_command)
