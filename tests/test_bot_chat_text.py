"""The core's text tools: measuring, splitting, paging and cleaning (issue 9).

Expected lengths come from the platforms' own counting (UTF-16 code units for Telegram, UTF-8
bytes for WeChat), computed here independently of ``bot.chat.splitting.measure``.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.cleaning import clean_name, clean_text, mask_name
from bot.chat.paging import paginate
from bot.chat.splitting import shorten, split


def utf16_units(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def utf8_bytes(text: str) -> int:
    return len(text.encode())


FAMILY = "👩\u200d👩\u200d👧"  # one grapheme, 8 UTF-16 units
FLAG = "🇨🇳"  # two regional indicators, one grapheme
ACCENT = "e\u0301"  # e + combining acute


def test_split_keeps_lines_and_fits_characters() -> None:
    lines = [f"{i:03d} " + "绿" * 50 for i in range(200)]
    parts = split("\n".join(lines), 4096, "chars")
    assert all(utf16_units(p) <= 4096 for p in parts)
    assert "\n".join(parts).split("\n") == lines  # nothing lost, each line whole


def test_split_by_utf8_bytes_counts_chinese_as_three() -> None:
    text = "\n".join("积分" * 100 for _ in range(20))  # 600 bytes a line
    parts = split(text, 2048, "utf8_bytes")
    assert all(utf8_bytes(p) <= 2048 for p in parts)
    assert [len(p.split("\n")) for p in parts] == [3] * 6 + [2]  # 3*600+2 newlines fit


def test_split_never_cuts_a_grapheme_or_surrogate() -> None:
    text = (FAMILY + FLAG + ACCENT) * 300  # one long line, no spaces
    for unit, limit in (("chars", 100), ("utf8_bytes", 101)):
        parts = split(text, limit, unit)  # type: ignore[arg-type]
        assert "".join(parts) == text
        for part in parts:
            size = utf16_units(part) if unit == "chars" else utf8_bytes(part)
            assert size <= limit
            assert part.startswith(("👩", "🇨", "e"))
            assert not unicodedata.category(part[0]).startswith("M")
            assert part[-1] not in {"\u200d"}


def test_split_wraps_a_long_line_at_a_space() -> None:
    words = ["word"] * 2000
    parts = split(" ".join(words), 4096)
    assert all(len(p) <= 4096 for p in parts)
    assert " ".join(parts).split() == words


def test_split_shorten_mode_keeps_one_line_per_entry() -> None:
    text = "short\n" + "长" * 5000 + "\nend"
    parts = split(text, 4096, long_lines="shorten")
    assert len(parts) == 3 and parts[0] == "short" and parts[2] == "end"
    assert parts[1] == "长" * 4095 + "…"


def test_shorten_fits_with_ellipsis_and_leaves_short_text_alone() -> None:
    assert shorten("Lin'an", 10) == "Lin'an"
    cut = shorten("绿" * 300, 100, "utf8_bytes")
    assert cut.endswith("…") and utf8_bytes(cut) <= 100
    assert cut == "绿" * 32 + "…"  # 96 + 3 bytes
    assert shorten("a" + FAMILY, 5, "chars") == "a…"


def test_split_cuts_a_grapheme_longer_than_the_limit_between_its_code_points() -> None:
    # CI seed found it: U+0800 (3 bytes) + a combining grave (2 bytes) is one 5-byte grapheme.
    assert split("\u0800\u0300", 4, "utf8_bytes") == ["\u0800", "\u0300"]
    piled = "e" + "\u0301" * 10  # one grapheme of 21 bytes
    parts = split(piled, 8, "utf8_bytes")
    assert "".join(parts) == piled and all(utf8_bytes(p) <= 8 for p in parts)
    with pytest.raises(ValueError):
        split("\U0001f600\U0001f600", 3, "utf8_bytes")  # a 4-byte code point cannot fit in 3


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=600), st.integers(min_value=4, max_value=300))
def test_split_always_fits(text: str, limit: int) -> None:
    for unit in ("chars", "utf8_bytes"):
        for part in split(text, limit, unit):  # type: ignore[arg-type]
            size = utf16_units(part) if unit == "chars" else utf8_bytes(part)
            assert size <= limit


def test_paginate_fits_each_page_and_keeps_order() -> None:
    entries = [f"{i}. " + "名" * 200 + "\n" + "址" * 300 + "\n" + "时" * 100 for i in range(10)]
    header, footer = "附近的联盟商家：\n\n", "\n\n第 10/10 页"
    pages = paginate(entries, 4096, "chars", header=header, footer=footer)
    assert all(utf16_units(p.text) <= 4096 for p in pages)
    assert [p.first for p in pages] == sorted(p.first for p in pages)
    assert sum(p.count for p in pages) == 10
    assert {p.total for p in pages} == {len(pages)} and len(pages) > 1


def test_paginate_shortens_an_entry_too_long_for_any_page() -> None:
    entry = "N" * 200 + "\n" + "A" * 3000 + "\n" + "H" * 100
    pages = paginate([entry], 2048, "utf8_bytes", header="H\n")
    assert len(pages) == 1 and utf8_bytes(pages[0].text) <= 2048
    name, address, hours = pages[0].text.removeprefix("H\n").split("\n")
    assert name == "N" * 200 and hours == "H" * 100  # short lines kept whole
    assert address.endswith("…")


def test_paginate_refuses_a_frame_without_room() -> None:
    with pytest.raises(ValueError):
        paginate(["x"], 10, header="0123456789")


RLO = "\u202e"


def test_clean_name_removes_bidi_controls_and_format() -> None:
    assert clean_name(RLO + "Alice") == "Alice"
    assert clean_name("A\u2066li\u2069ce\u200e\u200f\u202a\u202c") == "Alice"
    assert clean_name("王\x00小\n明") == "王 小 明"
    assert clean_name(RLO + "\u200f  ") is None
    assert clean_name("程序员" + "👩\u200d💻") == "程序员👩\u200d💻"  # emoji ZWJ kept


def test_clean_text_keeps_newlines_unless_single_line() -> None:
    assert clean_text("a\u202eb\nc\x07d") == "ab\ncd"
    assert clean_text("a\u202eb\nc\x07d", single_line=True) == "ab c d"


def test_mask_starts_at_first_visible_letter() -> None:
    assert mask_name(RLO + "Alice") == "A**"
    assert mask_name(" \u2067 王小明") == "王**"
    assert mask_name(RLO) == "**"
    assert mask_name(None) == "**"
