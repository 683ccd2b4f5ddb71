"""``greenpoints demo --channel wechat`` with a piped transcript (issue 10): offline, no token,
embedded SQLite; what a WeChat follower gets, rendered by the WeChat channel's own code."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest

from bot.channels.wechat import demo
from bot.chat.i18n import translator

SHOP_NAME = "锦城绿色生活超市"


async def test_the_wechat_demo_follows_scans_confirms_by_label_and_pages_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``printf '/qr\\n:staff\\n:scan\\n88.50\\n✅ 确认\\n:buy 120\\n:location\\n' |
    greenpoints demo --channel wechat``, in this process."""
    monkeypatch.setenv("GREENPOINTS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("GREENPOINTS_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    t = translator("zh_Hans")  # the demo follower's language
    confirm = t._("✅ Confirm")
    out = io.StringIO()
    script = io.StringIO(f"/qr\n:staff\n:scan\n88.50\n{confirm}\n:buy 120\n:location\n")
    assert await demo.run(tmp_path, script, out) == 0
    shown = out.getvalue()
    steps = dict(re.findall(r"^> (.*)\n((?:(?!> ).*\n)*)", shown, flags=re.MULTILINE))

    greeting = shown.split("> /qr", 1)[0]
    assert "🟢 " + t._("Welcome to Green Points!").split("\n")[0] in greeting  # a follow greets

    code = steps["/qr"]  # a picture has no caption: its words come as a message of their own
    assert code.startswith("🟢 [picture, no caption] saved to ")
    picture = Path(code.split("saved to ", 1)[1].split("\n", 1)[0])
    assert (await asyncio.to_thread(picture.read_bytes)).startswith(b"\x89PNG")
    words = code.split("\n🟢 ", 1)[1]  # the next bubble
    assert re.search(r"\d{4} \d{4} \d{4} \d{4} \d{4}", words)

    assert SHOP_NAME in steps[":staff"]  # the invite's parametric QR made a cashier
    assert re.search(r"\[1 .+\]", steps[":scan"])  # the scanner's result asks for the bill
    preview = steps["88.50"]
    assert f"[1 {confirm}]" in preview  # a menu link, numbered
    done = steps[confirm]  # typed label: a tap whose menu id went missing still confirms
    assert "🟢 " + t._("✅ Redeemed at {merchant}").format(merchant=SHOP_NAME) in done
    assert "[template message: voucher.redeemed]" in done
    bought = steps[":buy 120"]
    assert "[template message: points.earned]" in bought and "¥120.00" in bought

    sizes = [int(n) for n in re.findall(r"^🟢 \(\d+/\d+, (\d+) bytes\)", steps[":location"],
                                        flags=re.MULTILINE)]
    assert len(sizes) >= 2 and all(n <= 2048 for n in sizes)  # one reply, paged by bytes
    assert sizes[0] > 1500  # pages are filled, not cut short


def test_the_demo_command_takes_the_wechat_channel_and_nothing_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bot.cli import main

    assert main(["demo", "--channel", "wechat", "extra"]) == 2
    assert "--channel wechat takes no more arguments" in capsys.readouterr().err
