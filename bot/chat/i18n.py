"""Translations (gettext catalogs in ``locales/``) and the locale a Telegram user starts with.

Catalogs are read from the ``.po`` files and compiled in memory at start-up, so there is no
build step and no binary file to keep in sync with its source.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from gettext import GNUTranslations, NullTranslations
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parents[2] / "locales"
LOCALES: tuple[str, ...] = ("zh_Hans", "zh_Hant", "en")
DEFAULT_LOCALE = "zh_Hans"
DOMAIN = "messages"


def negotiate(language_code: str | None) -> str:
    """Telegram's ``language_code`` (an IETF tag such as ``zh-hans``, ``zh-TW``, ``en-GB``)."""
    if not language_code:
        return DEFAULT_LOCALE
    parts = language_code.replace("_", "-").lower().split("-")
    if parts[0] == "zh":
        rest = set(parts[1:])
        return "zh_Hant" if rest & {"hant", "tw", "hk", "mo"} else "zh_Hans"
    if parts[0] == "en":
        return "en"
    return DEFAULT_LOCALE


@cache
def catalog(locale: str) -> NullTranslations:
    path = LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.exists():
        return NullTranslations()
    with path.open("rb") as f:
        po = read_po(f, locale=Locale.parse(locale))
    buf = io.BytesIO()
    write_mo(buf, po, use_fuzzy=False)
    buf.seek(0)
    return GNUTranslations(buf)


@dataclass(frozen=True)
class Translator:
    """One locale's gettext, carried by every update so handlers never pick a language."""

    locale: str

    def _(self, message: str) -> str:
        return catalog(self.locale).gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return catalog(self.locale).ngettext(singular, plural, n)

    @property
    def babel(self) -> Locale:
        return babel_locale(self.locale)


@cache
def babel_locale(locale: str) -> Locale:
    return Locale.parse(locale)


def translator(locale: str | None) -> Translator:
    return Translator(locale if locale in LOCALES else DEFAULT_LOCALE)


def N_(message: str) -> str:
    """Mark a string for extraction where it is defined; it is translated where it is shown."""
    return message
