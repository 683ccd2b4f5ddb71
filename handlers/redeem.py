"""/qr: the member's redemption code, as a QR to show at the till and as 20 digits to type."""

from __future__ import annotations

import datetime as dt

from bot.chat import choice_data, formatting
from bot.chat.events import Choice, Command
from bot.chat.i18n import Translator
from bot.chat.replies import ChoiceButton, Picture, Toast, rows
from bot.chat.router import Router
from bot.chat.turn import Turn
from ledger_client.models import RedemptionCode

FRESH = "qr"


def grouped(digits: str) -> str:
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def minutes_left(expires_at: dt.datetime) -> int:
    """Whole minutes until ``expires_at`` (naive means UTC, as the ledger writes it)."""
    aware = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=dt.UTC)
    return max(1, round((aware - dt.datetime.now(dt.UTC)).total_seconds() / 60))


def caption(t: Translator, code: RedemptionCode) -> str:
    minutes = minutes_left(code.expires_at)
    lines = [
        t._("Show this code at the till of any alliance merchant."),
        t._("Code: {digits}").format(digits=grouped(code.numeric_code)),
        t._("Valid until {time} ({minutes} min), for one purchase.").format(
            time=formatting.clock(t, code.expires_at), minutes=minutes
        ),
    ]
    if code.vouchers_fen:
        lines.append(
            t._("It can apply up to {vouchers} of vouchers, within each merchant's cap.").format(
                vouchers=formatting.money(t, code.vouchers_fen)
            )
        )
    else:
        lines.append(t._("You have no vouchers yet; the code still earns you points."))
    return "\n".join(lines)


def fresh_choice(t: Translator) -> ChoiceButton:
    return ChoiceButton(t._("🔄 New code"), choice_data.pack(FRESH, "new"))


async def _fresh(turn: Turn, *, replaces: bool) -> Picture:
    code = await turn.services.ledger.issue_code(await turn.member_id())
    image = turn.services.pictures.redemption_code(
        turn.services.deep_link(code.link_code), code.numeric_code
    )
    text = caption(turn.t, code)
    return Picture(image, text, text, rows([fresh_choice(turn.t)]), replaces=replaces)


async def show_code(event: Command, turn: Turn) -> None:
    turn.say(await _fresh(turn, replaces=False))


async def new_code(event: Choice, turn: Turn) -> None:
    if choice_data.unpack(event.data, FRESH, 1) != ["new"]:
        turn.say(Toast(turn.t._("This button has expired.")))
        return
    picture = await _fresh(turn, replaces=True)
    turn.say(Toast(turn.t._("Here is a new code; the old one no longer works.")), picture)


def routes(router: Router) -> None:
    router.command("qr", show_code)
    router.choice(FRESH, new_code)
