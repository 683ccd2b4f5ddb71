"""WeChat deliveries as core events, core replies as WeChat messages (DESIGN.md "The
conversation core"; rules from shared/WECHAT.md).

In: a follow is ``Follow`` (``Scan`` with ``via="qr_scene"`` when it came through a parametric QR
code, as does ``SCAN`` from a follower); the menu scanner's ``scancode_waitmsg`` is ``Scan`` with
``via="scanner"``; a menu ``CLICK`` is the ``Command`` its key names; a text that is a tapped
menu link is ``Choice`` (by its id, else by its label in the chat's map); ``/name args`` is a
``Command``; positions are converted from GCJ-02 to WGS-84 here. Out: texts paged within 2,048
bytes with choices as menu links, pictures uploaded (ASCII name) and sent without caption with
their text after, places as map links, no edits (``replaces`` is a new message) and no toasts
(an alert one becomes text).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.channels.wechat.endpoint import Outgoing, OutImage, OutText
from bot.channels.wechat.geo import gcj02_to_wgs84, map_link
from bot.channels.wechat.inbound import Inbound
from bot.channels.wechat.render import page_text, tapped_choice, text_with_choices
from bot.chat.cleaning import clean_name
from bot.chat.events import (
    Choice,
    Command,
    Event,
    Follow,
    Location,
    Person,
    Photo,
    PhotoFetch,
    Scan,
    Text,
    Unfollow,
)
from bot.chat.replies import (
    AskLocation,
    ChoiceRows,
    Document,
    Picture,
    Place,
    Reply,
    TextReply,
    Toast,
)

CHANNEL = "wechat"
QR_PREFIX = "qrscene_"
# Menu CLICK keys are command names; anything else is ignored rather than guessed at.
MENU_COMMANDS = frozenset(
    {"start", "balance", "qr", "nearby", "help", "language", "settings", "today", "broadcast"}
)
# Scanner events carry the code the camera read.
SCANNER_EVENTS = frozenset({"scancode_waitmsg", "scancode_push"})


def _float(value: object) -> float | None:
    try:
        result = float(str(value))
    except ValueError:
        return None
    return result if result == result and abs(result) <= 180 else None  # NaN, range


def _location(person: Person, lat: object, lon: object, label: object) -> Location | None:
    glat, glon = _float(lat), _float(lon)
    if glat is None or glon is None or abs(glat) > 90:
        return None
    wlat, wlon = gcj02_to_wgs84(glat, glon)
    name = clean_name(label if isinstance(label, str) else None)
    return Location(person, wlat, wlon, name)


def to_event(
    inbound: Inbound,
    by_label: Mapping[str, str],
    photo_fetch: Callable[[str], PhotoFetch] | None = None,
) -> Event | None:
    """The core event for one delivery, or None for what no feature answers (LOCATION
    reports, VIEW clicks, unknown types). ``by_label`` is the chat's label -> choice map
    (store.choice_map); ``photo_fetch(media_id)`` makes the lazy download for a photo."""
    person = Person(CHANNEL, inbound.openid)
    fields = inbound.fields
    kind = inbound.msg_type
    if kind == "text":
        content = str(fields.get("Content") or "").strip()
        data = tapped_choice(fields, by_label)
        if data is not None:
            return Choice(person, data, label=content)
        if content.startswith("/") and len(content) > 1:
            name, *args = content[1:].split()
            return Command(person, name.lower().split("@", 1)[0], tuple(args))
        return Text(person, content)
    if kind == "location":
        return _location(
            person, fields.get("Location_X"), fields.get("Location_Y"), fields.get("Label")
        )
    if kind == "image":
        media_id = str(fields.get("MediaId") or "")
        if not media_id or photo_fetch is None:
            return None
        return Photo(person, photo_fetch(media_id))
    if kind != "event":
        return None
    event = inbound.event
    key = str(fields.get("EventKey") or "")
    if event == "subscribe":
        if key.startswith(QR_PREFIX) and len(key) > len(QR_PREFIX):
            return Scan(person, key[len(QR_PREFIX) :], via="qr_scene")
        return Follow(person)
    if event == "scan":
        return Scan(person, key, via="qr_scene") if key else None
    if event == "unsubscribe":
        return Unfollow(person)
    if event in SCANNER_EVENTS:
        info = fields.get("ScanCodeInfo")
        result = info.get("ScanResult") if isinstance(info, dict) else None
        return Scan(person, str(result).strip(), via="scanner") if result else None
    if event == "location_select":
        info = fields.get("SendLocationInfo")
        if not isinstance(info, dict):
            return None
        return _location(
            person,
            info.get("Location_X"),
            info.get("Location_Y"),
            info.get("Poiname") or info.get("Label"),
        )
    if event == "click" and key in MENU_COMMANDS:
        return Command(person, key)
    return None


def _rows(choices: ChoiceRows) -> list[list[tuple[str, str]]]:
    return [[(b.label, b.data) for b in row] for row in choices]


@dataclass
class Rendered:
    """Messages in order, and the label -> choice map to remember for the chat (the last
    offered choices win, as only those are on the person's screen bottom)."""

    outs: list[Outgoing] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)


Upload = Callable[[bytes, str], Awaitable[str]]


async def render(replies: Sequence[Reply], upload: Upload) -> Rendered:
    """``upload(png, ascii_name)`` returns a media id (api.upload_image)."""
    done = Rendered()

    def add_text(text: str, choices: ChoiceRows = ()) -> None:
        pages, by_label = text_with_choices(text, _rows(choices))
        done.outs.extend(OutText(p) for p in pages)
        if by_label:
            done.choices = by_label

    for reply in replies:
        if isinstance(reply, TextReply):
            add_text(reply.text, reply.choices)
        elif isinstance(reply, Picture):
            done.outs.append(OutImage(await upload(reply.png, "picture.png")))
            words = reply.caption or reply.alt_text
            if words or reply.choices:
                add_text(words or "", reply.choices)
        elif isinstance(reply, Document):  # no files in a WeChat chat: its text instead
            if reply.alt_text or reply.caption:
                add_text(reply.alt_text or reply.caption or "")
        elif isinstance(reply, Place):
            name = clean_name(reply.name) or "·"
            link = f'<a href="{map_link(name, reply.lat, reply.lon)}">{name}</a>'
            address = clean_name(reply.address, limit=200) or ""
            done.outs.extend(OutText(p) for p in page_text(f"{link}\n{address}".strip()))
        elif isinstance(reply, AskLocation):
            add_text(reply.prompt)
        elif isinstance(reply, Toast) and reply.alert:
            add_text(reply.text)
    return done
