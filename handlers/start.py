"""/start (with or without a deep-link payload) and /help."""

from __future__ import annotations

from bot.chat import commands
from bot.chat.events import Command, Follow, Scan
from bot.chat.i18n import Translator
from bot.chat.router import Router
from bot.chat.turn import Turn
from handlers.merchant import open_deep_link
from ledger_client import errors as ledger_errors


def help_text(t: Translator, *, staff: bool = False, admin: bool = False) -> str:
    """What a consumer can do, then the commands of the person's roles (the menu's table,
    ``bot.chat.commands``), so staff and admins learn theirs from /help as from the menu."""
    lines = [
        t._("Here is what I can do:"),
        "",
        t._("/balance — your points, their value and your vouchers"),
        t._("/nearby — alliance merchants within a 15-minute walk"),
        t._("/qr — a redemption code to show at the till"),
        t._("/pool — the points pool and point price, public, with their history"),
        t._("/language — 简体中文 · 繁體中文 · English"),
        t._("/settings — voucher and points notices on or off"),
        t._("/link — one balance on WeChat and Telegram"),
    ]
    for shown, heading, listed in (
        (staff, t._("For the shop's staff:"), commands.STAFF),
        (admin, t._("For alliance administrators:"), commands.ADMIN),
    ):
        if shown:
            lines += ["", heading]
            lines += [f"/{name} — {t._(description)}" for name, description in listed]
    lines += [
        "",
        t._(
            "Points come only from purchases at alliance merchants; "
            "they cannot be bought, sold or given to others."
        ),
    ]
    return "\n".join(lines)


async def roles(turn: Turn) -> tuple[bool, bool]:
    """Whether the person is a merchant's staff (asked of the ledger; raises its
    ``Unavailable``) and whether they are an admin (``GREENPOINTS_ADMIN_IDS``)."""
    profile = turn.profile
    staff = await turn.services.ledger.staff_lookup(*profile.identity) is not None
    return staff, turn.services.is_admin(profile.key)


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
    _member, created = await turn.resolve_member()
    profile = turn.profile
    # Asked before anything is said, so a ledger outage gets one "try again" and no half reply.
    staff, admin = await roles(turn)
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
        help_text(t, staff=staff, admin=admin),
    ]
    turn.text("\n".join(lines))
    turn.refresh_menu(staff=staff)


async def help_command(event: Command, turn: Turn) -> None:
    try:
        staff, admin = await roles(turn)
    except (ledger_errors.Unavailable, ledger_errors.Throttled):
        # /help answers while the ledger is down (what a consumer can do needs no ledger); a
        # cashier then sees the consumer's list until it is back.
        staff, admin = False, turn.services.is_admin(turn.profile.key)
    turn.text(help_text(turn.t, staff=staff, admin=admin))


def routes(router: Router) -> None:
    router.command("start", start)
    router.add("scan", None, scanned)
    router.add("follow", None, followed)
    router.command("help", help_command)
