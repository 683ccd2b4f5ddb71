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

from bot.chat.i18n import Translator

ZONE = ZoneInfo("Asia/Shanghai")


def yuan(fen: int) -> Decimal:
    return Decimal(fen).scaleb(-2)


YUAN_SIGN = {"zh_Hant": "¥"}
"""The yuan's sign where CLDR's differs from what the reader sees at the till.

Babel (CLDR) writes yuan as ``CN¥`` in Traditional Chinese, a sign meant to tell the yuan from
the Japanese yen in text about many currencies. A Traditional Chinese reader of this bot is a
Hong Kong or Taiwan customer (or cashier) shopping in mainland China: every amount here is yuan,
and the price tags, the till's screen and the receipts they compare our figures with show
``¥``, as does the Simplified Chinese text of the cashier beside them. So zh_Hant shows ``¥``
like zh_Hans. English keeps CLDR's ``CN¥``, the form an English reader knows from exchange
boards, where ``¥`` alone would read as yen."""


def _currency(t: Translator, amount: Decimal, pattern: str | None, digits: bool) -> str:
    sign = YUAN_SIGN.get(t.locale)
    if sign is not None:
        pattern = (pattern or t.babel.currency_formats["standard"].pattern).replace("¤", sign)
    return format_currency(
        amount, "CNY", format=pattern, currency_digits=digits, locale=t.babel
    )


def money(t: Translator, fen: int) -> str:
    """An amount of ``fen`` in yuan as the locale writes it: ¥12.50 (zh_Hans, zh_Hant, see
    ``YUAN_SIGN``), CN¥12.50 (en)."""
    return _currency(t, yuan(fen), None, True)


def price_per_point(t: Translator, fen_per_point: Decimal | str) -> str:
    """The point price in yuan per point, to four decimals (¥0.0559), from the ledger's exact
    fen per point (a decimal or its string; no float): a reported ratio, never a promise."""
    return _currency(t, Decimal(fen_per_point).scaleb(-2), "¤#,##0.0000", False)


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


WALK_M_PER_MIN = 80
"""About 4.8 km/h, the pace a 15-minute convenience circle is drawn with (the ledger's circle
rules use the same 80 m a minute, ``ledger/circle.py``)."""


def walking_minutes(metres: int, speed_m_per_min: int = WALK_M_PER_MIN) -> int:
    """Minutes to walk ``metres`` at ``speed_m_per_min``, rounded up, at least one."""
    return max(1, -(-metres // speed_m_per_min))


def percent(t: Translator, basis_points: int) -> str:
    return f"{format_decimal(Decimal(basis_points).scaleb(-2), locale=t.babel)}%"
