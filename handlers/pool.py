"""/pool: the public transparency record — pool, points in circulation, price and their history.

DESIGN.md "The seeds' other rules" (可追溯、可验证): the pool, points in circulation and the point
price are public with their daily history, and every day's record carries the heads of the
journal chains. Anyone may ask, member or not. The price is reported, never promised.
"""

from __future__ import annotations

from bot.chat import formatting
from bot.chat.events import Command
from bot.chat.i18n import Translator, translator
from bot.chat.pictures import ChartLabels, DayFigures
from bot.chat.replies import Picture
from bot.chat.router import Router
from bot.chat.turn import Turn
from ledger_client.models import PublicPool

DAYS = 90  # days of history in the chart
HEAD_SHOWN = 12  # hex digits of the newest record's hash shown (enough to compare by eye)


def _price(t: Translator, fen_per_point: str) -> str:
    """Yuan per point from the ledger's decimal string of fen per point (no float)."""
    return formatting.price_per_point(t, fen_per_point)


def pool_text(t: Translator, pool: PublicPool) -> str:
    """The figures under the chart: a few lines, well within any caption limit."""
    lines = [
        t._("Points pool: {pool}").format(pool=formatting.money(t, pool.pool_fen)),
        t._("Points in circulation: {points}").format(points=formatting.number(t, pool.points)),
        t._("Point price: {price} per point (pool ÷ points; it moves and is not a promise)").format(
            price=_price(t, pool.fen_per_point)
        ),
    ]
    if pool.days:
        newest = pool.days[-1]
        lines.append(
            t._("Published daily records: {count}; newest {day}, hash {hash}…").format(
                count=formatting.number(t, len(pool.days)),
                day=formatting.day(t, newest.published_at),
                hash=newest.hash[:HEAD_SHOWN],
            )
        )
    return "\n".join(lines)


def chart_labels(t: Translator) -> ChartLabels:
    return ChartLabels(
        title=t._("Points pool and point price"),
        pool=t._("Points pool (yuan)"),
        price=t._("Point price (fen per point)"),
        empty=t._("No daily record has been published yet."),
    )


async def show_pool(event: Command, turn: Turn) -> None:
    t = turn.t
    pool = await turn.services.ledger.public_pool(DAYS)
    days = [DayFigures(d.date, d.pool_fen, d.points) for d in pool.days]
    # Drawing takes tens of milliseconds of CPU: off the event loop.
    pictures = turn.services.pictures
    drawn = t if pictures.has_cjk() else translator("en")  # no CJK font: English labels
    png = await pictures.pool_chart(days, chart_labels(drawn))
    text = pool_text(t, pool)
    turn.say(Picture(png, caption=text, alt_text=text))


def routes(router: Router) -> None:
    router.command("pool", show_pool)
