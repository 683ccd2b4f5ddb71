"""Money, dates, distances and durations in the user's locale (Babel).

Amounts are integer fen all the way here; the only division is the exact decimal shift into yuan
for display.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_currency, format_decimal
from babel.units import format_unit

from bot.i18n import Translator

ZONE = ZoneInfo("Asia/Shanghai")


def yuan(fen: int) -> Decimal:
    return Decimal(fen).scaleb(-2)


def money(t: Translator, fen: int) -> str:
    """¥12.50 / ￥12.50 / CN¥12.50, as each locale writes yuan."""
    return format_currency(yuan(fen), "CNY", locale=t.babel)


def number(t: Translator, value: int | Decimal | str) -> str:
    return format_decimal(Decimal(value), locale=t.babel)


def _local(moment: dt.datetime) -> dt.datetime:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(ZONE)


def when(t: Translator, moment: dt.datetime) -> str:
    """A date and time, in China's time zone (the alliance's), in the locale's medium style."""
    return format_datetime(_local(moment), "medium", tzinfo=ZONE, locale=t.babel)


def day(t: Translator, moment: dt.datetime | dt.date) -> str:
    value = _local(moment).date() if isinstance(moment, dt.datetime) else moment
    return format_date(value, "medium", locale=t.babel)


def clock(t: Translator, moment: dt.datetime) -> str:
    return format_time(_local(moment), "short", tzinfo=ZONE, locale=t.babel)


def distance(t: Translator, metres: int) -> str:
    """Metres below a kilometre, kilometres to one decimal from there on, each written the way
    the locale writes units (CLDR, through Babel): ``320 m`` / ``1.2 km`` in English, ``320米``
    / ``1.2公里`` in Simplified and ``320 公尺`` / ``1.2 公里`` in Traditional Chinese."""
    if metres < 1000:
        return format_unit(metres, "length-meter", "short", locale=t.babel)
    km = (Decimal(metres) / 1000).quantize(Decimal("0.1"))
    return format_unit(km, "length-kilometer", "short", format="#,##0.#", locale=t.babel)


def walking_minutes(metres: int, speed_m_per_min: int = 80) -> int:
    """About 4.8 km/h, the pace a 15-minute convenience circle is drawn with."""
    return max(1, -(-metres // speed_m_per_min))


def percent(t: Translator, basis_points: int) -> str:
    return f"{format_decimal(Decimal(basis_points).scaleb(-2), locale=t.babel)}%"
