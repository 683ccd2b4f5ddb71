"""/nearby's list laid out for each channel's limit (issue 9), without a platform.

Limits are the platforms' published ones (Telegram 4,096 characters counted in UTF-16 units,
WeChat 2,048 UTF-8 bytes), measured here independently of ``bot.chat.splitting``.
"""

from __future__ import annotations

import re

import pytest

from bot.chat.channel import TELEGRAM, WECHAT, Capabilities
from bot.chat.i18n import translator
from handlers.nearby import listing_page
from ledger_client.models import Nearby, NearbyMerchant


def longest(n: int) -> NearbyMerchant:
    return NearbyMerchant(
        id=n + 1,
        name="\u202e" + "名" * 199,
        category="grocery",
        address="址" * 300,
        lat=30.0,
        lon=120.0,
        hours="时" * 100,
        concession_bp=500,
        voucher_cap_bp=2000,
        distance_m=100 * n,
    )


def size(text: str, caps: Capabilities) -> int:
    if caps.text_unit == "utf8_bytes":
        return len(text.encode())
    return len(text.encode("utf-16-le")) // 2


@pytest.mark.parametrize("caps", [TELEGRAM, WECHAT], ids=lambda c: c.name)
@pytest.mark.parametrize("locale", ["zh_Hans", "zh_Hant", "en"])
def test_ten_longest_merchants_fit_and_page_on(caps: Capabilities, locale: str) -> None:
    t = translator(locale)
    found = Nearby(
        merchants=[longest(n) for n in range(10)], total=25, radius_m=1500, categories={}
    )
    text, shown = listing_page(t, caps, found, None, 0)
    assert size(text, caps) <= caps.text_limit
    numbered = [line for line in text.splitlines() if re.match(r"\d+\. ", line)]
    assert len(numbered) == shown >= 1
    assert "\u202e" not in text
    if caps is TELEGRAM:
        assert shown == 10
    else:
        assert shown < 10  # 2,048 bytes cannot hold ten Chinese entries: "Farther" goes on


def test_wechat_page_continues_where_the_last_stopped() -> None:
    t = translator("en")
    found = Nearby(
        merchants=[longest(n) for n in range(10)], total=10, radius_m=1500, categories={}
    )
    text, shown = listing_page(t, WECHAT, found, None, 0)
    assert f"Showing 1–{shown} of 10." in text
    rest = Nearby(
        merchants=[longest(n) for n in range(shown, 10)], total=10, radius_m=1500, categories={}
    )
    second, _ = listing_page(t, WECHAT, rest, None, shown)
    assert second.splitlines()[1].startswith(f"{shown + 1}. ")
