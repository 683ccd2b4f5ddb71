"""/balance: points and their value at today's point price, vouchers, recent movements."""

from __future__ import annotations

from bot.chat import choice_data, formatting
from bot.chat.cleaning import clean_text
from bot.chat.events import Choice, Command
from bot.chat.i18n import Translator
from bot.chat.replies import ChoiceButton, Toast
from bot.chat.router import Router
from bot.chat.splitting import shorten
from bot.chat.turn import Turn
from ledger_client.models import Activity, Balance, CappedExit, Price

HISTORY = "bal"
SHOP_SHOWN = 40  # characters of a merchant's name in a history line
PAGE = 5
CAPPED_SHOWN = 3  # the most recent exit-cap conversions shown


def price_text(t: Translator, price: Price) -> str:
    """The point price in yuan per point: a reported ratio, never a promised return."""
    return formatting.price_per_point(t, price.fen_per_point)


def activity_line(t: Translator, item: Activity) -> str:
    day = formatting.day(t, item.at)
    shop = shorten(clean_text(item.merchant_name or "", single_line=True), SHOP_SHOWN)
    if item.type == "points.earned":
        return t._("{day} · +{points} points · {shop} ({amount})").format(
            day=day,
            points=formatting.number(t, item.points),
            shop=shop,
            amount=formatting.money(t, item.amount_fen),
        )
    if item.type == "voucher.granted":
        return t._("{day} · vouchers +{vouchers} (−{points} points)").format(
            day=day,
            vouchers=formatting.money(t, item.vouchers_fen),
            points=formatting.number(t, -item.points),
        )
    if item.vouchers_fen == 0:  # a bill paid at the till without vouchers: only points earned
        return t._("{day} · +{points} points · {shop}").format(
            day=day, points=formatting.number(t, item.points), shop=shop
        )
    return t._("{day} · vouchers used {vouchers} at {shop} · +{points} points").format(
        day=day,
        vouchers=formatting.money(t, -item.vouchers_fen),
        shop=shop,
        points=formatting.number(t, item.points),
    )


def capped_line(t: Translator, capped: CappedExit) -> str:
    """Points that reached their exit cap (issue 13; DESIGN.md "The seeds' other rules")."""
    return t.ngettext(
        "On {day}, {points} point reached its cap and became {vouchers} of vouchers.",
        "On {day}, {points} points reached their cap and became {vouchers} of vouchers.",
        capped.points,
    ).format(
        day=formatting.day(t, capped.date),
        points=formatting.number(t, capped.points),
        vouchers=formatting.money(t, capped.vouchers_fen),
    )


def history_choices(t: Translator, before: int | None) -> list[list[ChoiceButton]]:
    if before is None:
        return []
    return [[ChoiceButton(t._("More history"), choice_data.pack(HISTORY, before))]]


def pending_lines(t: Translator, balance: Balance) -> list[str]:
    """Points still in their hold after a purchase (issue 11): counted, not yet released."""
    if not balance.pending_points:
        return []
    return [
        t._("Of these, {pending} are pending: they join the daily release a few days after "
            "the purchase (a refund takes them back).").format(
            pending=formatting.number(t, balance.pending_points)
        )
    ]


def balance_text(t: Translator, balance: Balance) -> str:
    lines = [
        t._("💚 Your green consumption points"),
        t._("Points: {points}").format(points=formatting.number(t, balance.points)),
        *pending_lines(t, balance),
        t._("Worth {value} at today's point price of {price} per point.").format(
            value=formatting.money(t, balance.points_value_fen),
            price=price_text(t, balance.price),
        ),
        t._("The point price is pool ÷ points in circulation; it moves and is not a promise."),
        "",
    ]
    if balance.vouchers_fen and balance.nearest_expiry is not None:
        lines.append(
            t._("Vouchers: {vouchers} — {soonest} of them expire on {day}.").format(
                vouchers=formatting.money(t, balance.vouchers_fen),
                soonest=formatting.money(t, balance.nearest_expiry_fen),
                day=formatting.day(t, balance.nearest_expiry),
            )
        )
    else:
        lines.append(
            t._("Vouchers: none yet. Each day a small part of your points turns into vouchers.")
        )
    if balance.capped_exits:
        lines += ["", *(capped_line(t, c) for c in balance.capped_exits[:CAPPED_SHOWN])]
    if balance.activity:
        lines += ["", t._("Recent:")] + [f"• {activity_line(t, a)}" for a in balance.activity]
    return "\n".join(lines)


async def show_balance(event: Command, turn: Turn) -> None:
    t = turn.t
    balance = await turn.services.ledger.balance(await turn.member_id(), limit=PAGE)
    turn.text(balance_text(t, balance), history_choices(t, balance.activity_next_before))


async def more_history(event: Choice, turn: Turn) -> None:
    t = turn.t
    parts = choice_data.unpack(event.data, HISTORY, 1)
    before = choice_data.as_int(parts[0], 1, 2**62) if parts else None
    if before is None:
        turn.say(Toast(t._("This button has expired.")))
        return
    page = await turn.services.ledger.balance(await turn.member_id(), PAGE, before)
    text = "\n".join(f"• {activity_line(t, a)}" for a in page.activity) or t._(
        "No earlier movements."
    )
    turn.text(text, history_choices(t, page.activity_next_before))


def routes(router: Router) -> None:
    router.command("balance", show_balance)
    router.choice(HISTORY, more_history)
