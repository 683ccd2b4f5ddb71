"""The account's menus: one conditional menu per role x language, matched by user tag
(WECHAT.md rule 8: only tag rules work, and with several tags the last one wins, so each person
carries exactly one of these tags).

Buttons are the channel's commands: a ``CLICK`` key is the command it stands for (adapter.py
maps it back), the cashier's ``scancode_waitmsg`` "扫码核销" opens the camera and returns the code
as a scan, and ``location_select`` "附近商家" opens the location picker. Names stay within the
platform's limits (top buttons 16 bytes, sub-buttons 60).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from bot.channels.wechat.api import WeChatApi
from bot.chat.i18n import LOCALES, N_, translator

Role = Literal["consumer", "cashier", "admin"]
ROLES: tuple[Role, ...] = ("consumer", "cashier", "admin")
TOP_MAX, SUB_MAX = 16, 60  # bytes

BALANCE = N_("Balance")
CODE = N_("My code")
MORE = N_("More")
NEARBY = N_("Nearby shops")
LANGUAGE = N_("Language")
NOTICES = N_("Notices")
HELP = N_("Help")
SCAN = N_("Scan to redeem")
TODAY = N_("Today")
ANNOUNCE = N_("Announce")


def tag_name(role: Role, locale: str) -> str:
    return f"gp-{role}-{locale}"


def _click(name: str, key: str) -> dict[str, Any]:
    return {"type": "click", "name": name, "key": key}


def buttons(role: Role, locale: str) -> list[dict[str, Any]]:
    """The menu for one role in one language, as ``menu/addconditional`` takes it."""
    t = translator(locale)
    subs: list[dict[str, Any]] = [
        {"type": "location_select", "name": t._(NEARBY), "key": "nearby"},
        _click(t._(NOTICES), "settings"),
        _click(t._(LANGUAGE), "language"),
        _click(t._(HELP), "help"),
    ]
    if role == "consumer":
        top = [_click(t._(BALANCE), "balance"), _click(t._(CODE), "qr")]
    elif role == "cashier":
        top = [
            {"type": "scancode_waitmsg", "name": t._(SCAN), "key": "scan"},
            _click(t._(TODAY), "today"),
        ]
        subs.insert(0, _click(t._(BALANCE), "balance"))
    else:
        top = [_click(t._(ANNOUNCE), "broadcast"), _click(t._(BALANCE), "balance")]
    menu = [*top, {"name": t._(MORE), "sub_button": subs}]
    for button in menu:
        if len(button["name"].encode()) > TOP_MAX:
            raise ValueError(f"menu name over {TOP_MAX} bytes: {button['name']!r}")
        for sub in button.get("sub_button", []):
            if len(sub["name"].encode()) > SUB_MAX:
                raise ValueError(f"sub-menu name over {SUB_MAX} bytes: {sub['name']!r}")
    return menu


async def setup_menus(
    api: WeChatApi, existing_tags: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Create the tags (unless given) and one conditional menu per role x language; returns
    tag name -> tag id, which the caller keeps to tag people as their role or language
    changes. 9 ``addconditional`` calls of the 2,000 a day allowed."""
    tags = dict(existing_tags or {})
    for role in ROLES:
        for locale in LOCALES:
            name = tag_name(role, locale)
            if name not in tags:
                tags[name] = await api.create_tag(name)
            await api.add_conditional_menu(buttons(role, locale), tags[name])
    return tags
