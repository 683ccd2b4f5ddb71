"""WeChat rendering: pages within 2,048 bytes, menu links, the label fallback, coordinates."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from bot.channels.wechat.api import check_template_fields, template_field
from bot.channels.wechat.geo import gcj02_to_wgs84, map_link, wgs84_to_gcj02
from bot.channels.wechat.outbound import next_beijing_midnight
from bot.channels.wechat.render import (
    menu_link,
    page_text,
    render_choices,
    tapped_choice,
    text_with_choices,
)


def test_a_short_text_is_one_page_and_loses_cdata_ends() -> None:
    assert page_text("余额 100 积分 ]]> ok") == ["余额 100 积分 ]] > ok"]


def test_long_chinese_text_pages_within_2048_bytes_at_line_ends() -> None:
    lines = [f"第{i}家商户：绿色超市（临安店）距离 {i * 37} 米" for i in range(200)]
    text = "\n".join(lines)
    pages = page_text(text)
    assert len(pages) > 1
    assert all(len(p.encode("utf-8")) <= 2048 for p in pages)
    # Nothing lost, nothing cut inside a line: every page is whole lines, in order.
    assert "\n".join(pages) == text


def test_one_line_longer_than_a_page_is_cut_between_characters() -> None:
    text = "绿" * 1500  # 4,500 bytes, no line breaks
    pages = page_text(text)
    assert [len(p.encode()) for p in pages] == [2046, 2046, 408]  # 682 + 682 + 136 chars
    assert "".join(pages) == text


def test_links_are_never_split_across_pages() -> None:
    link = menu_link("查看附近商家", "nearby:1")
    text = ("说明" * 680) + link + ("。" * 10)
    pages = page_text(text)
    assert all(len(p.encode()) <= 2048 for p in pages)
    assert sum(p.count(link) for p in pages) == 1


def test_choices_become_menu_links_with_unique_labels() -> None:
    choices = render_choices(
        [[("确认", "confirm:9"), ("取消", "cancel")], [("确认", "confirm:10")]]
    )
    assert choices.lines == [
        '<a href="weixin://bizmsgmenu?msgmenucontent=确认&msgmenuid=confirm:9">确认</a>',
        '<a href="weixin://bizmsgmenu?msgmenucontent=取消&msgmenuid=cancel">取消</a>',
        '<a href="weixin://bizmsgmenu?msgmenucontent=确认 2&msgmenuid=confirm:10">确认 2</a>',
    ]
    assert choices.by_label == {"确认": "confirm:9", "取消": "cancel", "确认 2": "confirm:10"}


def test_unsafe_labels_and_ids_degrade_to_the_label_map() -> None:
    choices = render_choices([[('A&B "shop"', "x y/z")]])
    assert choices.lines == ['<a href="weixin://bizmsgmenu?msgmenucontent=A B shop">A B shop</a>']
    assert choices.by_label == {"A B shop": "x y/z"}


def test_a_tap_is_found_by_id_or_else_by_label() -> None:
    by_label = {"确认": "confirm:9", "取消": "cancel"}
    assert tapped_choice({"Content": "确认", "bizmsgmenuid": "confirm:9"}, by_label) == "confirm:9"
    assert tapped_choice({"Content": "取消"}, by_label) == "cancel"  # id missing
    assert tapped_choice({"Content": "你好"}, by_label) is None
    # An id we never offered is not trusted; the label decides.
    assert tapped_choice({"Content": "取消", "bizmsgmenuid": "admin:drop"}, by_label) == "cancel"


def test_text_with_choices_keeps_links_on_the_last_page() -> None:
    pages, by_label = text_with_choices("附近商家\n" + "行\n" * 1000, [[("下一页", "page:2")]])
    assert all(len(p.encode()) <= 2048 for p in pages)
    assert pages[-1].endswith("下一页</a>")
    assert by_label == {"下一页": "page:2"}


def test_template_fields_are_one_line_without_emoji_within_20_characters() -> None:
    assert template_field("绿色超市\n临安店 🌱") == "绿色超市 临安店"
    assert (
        template_field("一二三四五六七八九十一二三四五六七八九十一")
        == "一二三四五六七八九十一二三四五六七八九…"
    )
    check_template_fields({"amount": "¥12.50", "shop": "绿色超市"})
    with pytest.raises(ValueError, match="shop"):
        check_template_fields({"shop": "绿色超市\n临安店"})


def test_the_template_quota_resets_at_beijing_midnight() -> None:
    # 13:00 UTC is 21:00 in Beijing; its next midnight is 16:00 UTC the same day.
    assert next_beijing_midnight(dt.datetime(2026, 11, 29, 13, 0)) == dt.datetime(
        2026, 11, 29, 16, 0
    )
    assert next_beijing_midnight(dt.datetime(2026, 11, 29, 16, 0)) == dt.datetime(
        2026, 11, 30, 16, 0
    )


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dlat = (a[0] - b[0]) * 111_320
    dlon = (a[1] - b[1]) * 111_320 * math.cos(math.radians(a[0]))
    return math.hypot(dlat, dlon)


def test_gcj02_is_hundreds_of_metres_off_in_china_and_converts_back() -> None:
    linan = (30.2336, 119.7247)  # WGS-84, Lin'an
    gcj = wgs84_to_gcj02(*linan)
    assert 100 < _metres(linan, gcj) < 1000  # the published offset is a few hundred metres
    assert _metres(gcj02_to_wgs84(*gcj), linan) < 0.05
    assert wgs84_to_gcj02(48.8566, 2.3522) == (48.8566, 2.3522)  # Paris: untouched


def test_a_place_is_a_map_link() -> None:
    link = map_link("绿色超市 & 店", 30.2336, 119.7247)
    assert link.startswith("https://uri.amap.com/marker?position=119.724700,30.233600&name=")
    assert "%E7%BB%BF" in link and "&coordinate=wgs84" in link and " " not in link
