"""Every message the code can say exists in every catalog, and Babel writes amounts, dates and
distances the way each locale does.

Messages are found with Babel's own extractor, with the keywords and files the workflow in
``locales/README.md`` uses (``babel.cfg``), so a string added to the code and not to the
catalogs fails here by name.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.chat import formatting
from bot.chat.i18n import DEFAULT_LOCALE, LOCALES, LOCALES_DIR, N_, negotiate, translator

ROOT = Path(__file__).resolve().parent.parent
# The same as in locales/README.md: pybabel extract -F babel.cfg -k _ -k N_ -k ngettext:1,2
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}

Msgid = str | tuple[str, str]


def _method_map() -> list[tuple[str, str]]:
    """The ``[python: …]`` sections of babel.cfg, so this test reads what pybabel reads."""
    text = (ROOT / "babel.cfg").read_text(encoding="utf-8")
    patterns = re.findall(r"^\[python:\s*(.+?)\]\s*$", text, flags=re.MULTILINE)
    assert patterns, "babel.cfg names no Python sources"
    return [(pattern, "python") for pattern in patterns]


@cache
def extracted() -> dict[Msgid, tuple[str, int]]:
    """Every msgid in the source, with the first place it appears."""
    found: dict[Msgid, tuple[str, int]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map=_method_map(), keywords=KEYWORDS
    ):
        key: Msgid = message if isinstance(message, str) else (message[0], message[1])
        found.setdefault(key, (filename, lineno))
    return found


@cache
def po(locale: str) -> Catalog:
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=locale)


def fields(text: str) -> set[str]:
    """The ``{placeholders}`` of a str.format template."""
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name is not None}


def problems(locale: str) -> Iterator[str]:
    catalog = po(locale)
    for msgid, (filename, lineno) in sorted(extracted().items(), key=lambda kv: kv[1]):
        where = f"{filename}:{lineno}"
        singular = msgid if isinstance(msgid, str) else msgid[0]
        entry = catalog.get(singular)
        if entry is None:
            yield f"{locale}: missing {singular!r} ({where})"
            continue
        if entry.fuzzy:
            yield f"{locale}: fuzzy {singular!r} ({where})"
        if isinstance(msgid, tuple) != isinstance(entry.id, tuple | list):
            yield f"{locale}: {singular!r} is plural in one place only ({where})"
            continue
        strings = [entry.string] if isinstance(entry.string, str) else list(entry.string)
        if isinstance(msgid, tuple) and len(strings) != catalog.num_plurals:
            yield f"{locale}: {singular!r} needs {catalog.num_plurals} plural forms ({where})"
        wanted = fields(singular) | (fields(msgid[1]) if isinstance(msgid, tuple) else set())
        for text in strings:
            if not text.strip():
                yield f"{locale}: empty translation of {singular!r} ({where})"
                continue
            # A plural form may leave the number out ("one point"), never add a stranger.
            have = fields(text)
            if have - wanted or (not isinstance(msgid, tuple) and have != wanted):
                yield (
                    f"{locale}: placeholders {sorted(have)} in {text!r} do not match "
                    f"{sorted(wanted)} of {singular!r} ({where})"
                )


def test_the_extractor_finds_the_messages() -> None:
    """Guards the test itself: an extractor that found nothing would pass every catalog."""
    found = extracted()
    assert "This button has expired." in found
    assert "My points and vouchers" in found  # marked with N_()
    assert len(found) > 80


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_translated(locale: str) -> None:
    bad = list(problems(locale))
    assert not bad, f"{len(bad)} catalog problems:\n" + "\n".join(bad)


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_headers(locale: str) -> None:
    catalog = po(locale)
    assert str(catalog.locale) == locale
    expected = "nplurals=2; plural=(n != 1);" if locale == "en" else "nplurals=1; plural=0;"
    assert catalog.plural_forms == expected
    assert not catalog.fuzzy


def test_problems_are_named() -> None:
    """The checker sees a wrong placeholder and a missing message (so it can fail)."""
    catalog = po("zh_Hans")
    entry = catalog.get("Points: {points}")
    assert entry is not None
    saved = entry.string
    try:
        entry.string = "积分：{pts}"
        assert any("do not match" in p and "Points: {points}" in p for p in problems("zh_Hans"))
        del catalog["Points: {points}"]
        assert any(p.startswith("zh_Hans: missing 'Points: {points}'") for p in problems("zh_Hans"))
    finally:
        po.cache_clear()
    assert saved and not list(problems("zh_Hans"))


@pytest.mark.parametrize(
    ("locale", "msgid", "expected"),
    [
        ("zh_Hans", "My points and vouchers", "我的积分和抵用券"),
        ("zh_Hant", "My points and vouchers", "我的積分和抵用券"),
        ("en", "My points and vouchers", "My points and vouchers"),
        ("zh_Hans", "Show my redemption code", "出示我的核销码"),
        ("zh_Hant", "Show my redemption code", "出示我的核銷碼"),
    ],
)
def test_runtime_catalogs_use_the_glossary(locale: str, msgid: str, expected: str) -> None:
    assert translator(locale)._(N_(msgid)) == expected


def test_plural_messages_choose_their_form() -> None:
    """Every plural message in the code (issue 15: this used to skip when one named message was
    gone, silently dropping the check): English takes its singular at 1 and its plural at 0 and
    2; Chinese has one form, the same at 1 and 2, and it is a translation, not the msgid."""
    plurals = [m for m in extracted() if isinstance(m, tuple)]
    # The code has counted messages (announcement audience, points earned); if it ever has
    # none, this check has nothing to hold and should be rethought, not skipped.
    assert plurals, "the extractor found no ngettext message"
    en = translator("en")
    for singular, plural in plurals:
        assert en.ngettext(singular, plural, 1) == singular
        assert en.ngettext(singular, plural, 2) == plural
        assert en.ngettext(singular, plural, 0) == plural
        for locale in ("zh_Hans", "zh_Hant"):
            zh = translator(locale)
            one, two = zh.ngettext(singular, plural, 1), zh.ngettext(singular, plural, 2)
            assert one == two, (locale, singular)
            assert one not in (singular, plural), (locale, singular)


def test_command_names_stay_untranslated() -> None:
    for locale in LOCALES:
        t = translator(locale)
        for msgid in [m for m in extracted() if isinstance(m, str) and m.startswith("/")]:
            command = msgid.split()[0]
            assert t._(msgid).startswith(command + " "), (locale, msgid)


# --- negotiate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "locale"),
    [
        ("zh-TW", "zh_Hant"),
        ("zh-tw", "zh_Hant"),
        ("zh-HK", "zh_Hant"),
        ("zh-MO", "zh_Hant"),
        ("zh-Hant", "zh_Hant"),
        ("zh-hant-tw", "zh_Hant"),
        ("zh_Hant", "zh_Hant"),
        ("zh", "zh_Hans"),
        ("zh-CN", "zh_Hans"),
        ("zh-hans", "zh_Hans"),
        ("zh-SG", "zh_Hans"),
        ("en", "en"),
        ("en-GB", "en"),
        ("en-US", "en"),
        ("fr", "zh_Hans"),
        ("ru", "zh_Hans"),
        ("", "zh_Hans"),
        (None, "zh_Hans"),
    ],
)
def test_negotiate(code: str | None, locale: str) -> None:
    assert negotiate(code) == locale


def test_unknown_locale_falls_back_to_the_default() -> None:
    assert translator("fr").locale == DEFAULT_LOCALE == "zh_Hans"
    assert translator(None).locale == DEFAULT_LOCALE


# --- Babel formatting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "fen", "expected"),
    [
        ("zh_Hans", 1250, "¥12.50"),
        ("zh_Hans", 123456789, "¥1,234,567.89"),
        ("zh_Hans", 5, "¥0.05"),
        ("zh_Hant", 1250, "¥12.50"),
        ("zh_Hant", -123456789, "-¥1,234,567.89"),
        ("en", 1250, "CN¥12.50"),
        ("en", 100, "CN¥1.00"),
        ("en", 0, "CN¥0.00"),
    ],
)
def test_money(locale: str, fen: int, expected: str) -> None:
    assert formatting.money(translator(locale), fen) == expected


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("zh_Hans", "¥0.0559"), ("zh_Hant", "¥0.0559"), ("en", "CN¥0.0559")],
)
def test_point_price_writes_yuan_as_money_does(locale: str, expected: str) -> None:
    """Traditional Chinese shows ¥ as the till does, not CLDR's CN¥ (``formatting.YUAN_SIGN``),
    in the point price too: four decimals, from the ledger's exact decimal string."""
    assert formatting.price_per_point(translator(locale), "5.5912") == expected


def test_money_is_exact_for_large_amounts() -> None:
    """Fen go to yuan by a decimal shift, never through a float."""
    expected = "CN¥90,071,992,547,409.93"
    assert formatting.money(translator("en"), 9_007_199_254_740_993) == expected


MOMENT = dt.datetime(2026, 3, 5, 18, 30)  # naive = UTC, as the ledger writes it; 02:30 next day


@pytest.mark.parametrize(
    ("locale", "day", "clock"),
    [
        ("zh_Hans", "2026年3月6日", "02:30"),
        ("zh_Hant", "2026年3月6日", "凌晨2:30"),
        ("en", "Mar 6, 2026", "2:30\u202fAM"),
    ],
)
def test_dates_are_in_china_time_and_the_locales_style(locale: str, day: str, clock: str) -> None:
    t = translator(locale)
    assert formatting.day(t, MOMENT) == day
    assert formatting.day(t, MOMENT.replace(tzinfo=dt.UTC)) == day
    assert formatting.day(t, dt.date(2026, 3, 6)) == day
    assert formatting.clock(t, MOMENT) == clock
    assert day in formatting.when(t, MOMENT)


@pytest.mark.parametrize(
    ("locale", "metres", "expected"),
    [
        ("en", 0, "0 m"),
        ("en", 320, "320 m"),
        ("en", 999, "999 m"),
        ("en", 1000, "1 km"),
        ("en", 1234, "1.2 km"),
        ("en", 1500, "1.5 km"),
        ("en", 12_345, "12.3 km"),
        ("zh_Hans", 320, "320米"),
        ("zh_Hans", 1234, "1.2公里"),
        ("zh_Hans", 3000, "3公里"),
        ("zh_Hant", 320, "320 公尺"),
        ("zh_Hant", 1234, "1.2 公里"),
    ],
)
def test_distances(locale: str, metres: int, expected: str) -> None:
    assert formatting.distance(translator(locale), metres) == expected


@pytest.mark.parametrize(("metres", "minutes"), [(0, 1), (80, 1), (81, 2), (1200, 15), (1500, 19)])
def test_walking_minutes(metres: int, minutes: int) -> None:
    assert formatting.walking_minutes(metres) == minutes


def test_numbers_group_per_locale() -> None:
    assert formatting.number(translator("en"), 1234567) == "1,234,567"
    assert formatting.number(translator("zh_Hans"), 1234567) == "1,234,567"


def test_the_announcement_count_agrees_with_its_number() -> None:
    """Found when tried as a new user would: "Send this announcement to 1 people"."""
    singular = "Send this announcement to {count} person ({audience})?"
    plural = "Send this announcement to {count} people ({audience})?"
    assert (singular, plural) in extracted()
    en = translator("en")
    assert en.ngettext(singular, plural, 1) == singular
    assert en.ngettext(singular, plural, 2) == plural
    for locale in ("zh_Hans", "zh_Hant"):  # one form in Chinese, translated
        zh = translator(locale)
        assert zh.ngettext(singular, plural, 1) == zh.ngettext(singular, plural, 5) != plural


@pytest.mark.parametrize(
    ("locale", "staff_heading", "today", "admin_heading", "stats"),
    [
        ("zh_Hans", "店员可用：", "/today — 本店今日核销", "联盟管理员可用：", "/stats — "),
        ("zh_Hant", "店員可用：", "/today — 本店今日核銷", "聯盟管理員可用：", "/stats — "),
        ("en", "For the shop's staff:", "/today — Today's redemptions at my shop",
         "For alliance administrators:", "/stats — Alliance figures"),
    ],
)
def test_help_for_staff_and_admins_in_every_language(
    locale: str, staff_heading: str, today: str, admin_heading: str, stats: str
) -> None:
    """The role sections of /help are translated like the rest (headings and the menu's own
    descriptions), and only shown to those roles."""
    from handlers.start import help_text

    t = translator(locale)
    consumer = help_text(t).splitlines()
    both = help_text(t, staff=True, admin=True).splitlines()
    assert staff_heading not in consumer and admin_heading not in consumer
    assert both[both.index(staff_heading) + 1] == today
    admin_lines = both[both.index(admin_heading) + 1 :]
    assert any(line.startswith(stats) for line in admin_lines)
    if locale != "en":
        assert not any(c.isascii() and c.isalpha() for line in admin_lines[:4]
                       for c in line.partition(" — ")[2])


@pytest.mark.parametrize(
    ("locale", "said"),
    [
        ("en", "Nov 3, 2026 · +12 points · 锦城超市"),
        ("zh_Hans", "2026年11月3日 · +12 积分 · 锦城超市"),
    ],
)
def test_a_bill_paid_without_vouchers_is_not_called_voucher_use(locale: str, said: str) -> None:
    """Found trying /balance as a new user would: a redemption that applied no vouchers read
    "vouchers used ¥0.00"; it is the points it earned."""
    import datetime as dt

    from bot.chat.i18n import translator
    from handlers.balance import activity_line
    from ledger_client.models import Activity

    item = Activity(
        event_id=1, type="voucher.redeemed", at=dt.datetime(2026, 11, 3, 4), points=12,
        vouchers_fen=0, amount_fen=8_850, merchant_id=1, merchant_name="锦城超市",
    )
    line = activity_line(translator(locale), item)
    assert line == said and "0.00" not in line
