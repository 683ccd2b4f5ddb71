"""Text for WeChat: pages within 2,048 bytes, choices as menu links (WECHAT.md rules 6, 7).

A WeChat text is at most 2,048 UTF-8 bytes, and a longer one is silently not delivered, so long
texts are paged by bytes, at line ends where possible and never inside a link. Choices become
``weixin://bizmsgmenu`` links: a tap comes back as a text message whose Content is the label and
``bizmsgmenuid`` the id. The id is sometimes missing, so labels are made unique per message and
the label -> choice map is kept per chat (store.remember_choices).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.channels.wechat.inbound import cdata_safe

TEXT_LIMIT = 2048  # bytes
LABEL_LIMIT = 128  # bytes of msgmenucontent
ID_LIMIT = 64  # bytes of msgmenuid
_ID_OK = re.compile(r"^[A-Za-z0-9_.:|*\-]{1,64}$")
_LINK = re.compile(r"(<a [^>]*>.*?</a>)", re.DOTALL)
_LABEL_BAD = re.compile(r"[&\"<>=#?\r\n\t]+")


def _size(text: str) -> int:
    return len(text.encode())


def _cut(text: str, limit: int) -> tuple[str, str]:
    """The longest head of ``text`` within ``limit`` bytes (never half a character)."""
    head = text.encode()[:limit].decode(errors="ignore")
    return head, text[len(head) :]


def page_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split into messages of at most ``limit`` UTF-8 bytes, ``]]>`` removed.

    Breaks at line ends where it can, inside a line where it must, never inside a link.
    """
    text = cdata_safe(text).strip("\n")
    if _size(text) <= limit:
        return [text] if text else []
    atoms: list[str] = []
    for part in _LINK.split(text):
        if _LINK.fullmatch(part):
            atoms.append(part)
        else:
            atoms.extend(piece for piece in re.split(r"(?<=\n)", part) if piece)
    pages: list[str] = []
    current = ""
    for atom in atoms:
        while _size(atom) > limit:  # one line (or link) longer than a page
            if current:
                pages.append(current)
                current = ""
            head, atom = _cut(atom, limit)
            pages.append(head)
        if _size(current) + _size(atom) > limit:
            pages.append(current)
            current = ""
        current += atom
    if current:
        pages.append(current)
    return [page.strip("\n") for page in pages if page.strip("\n")]


def clean_label(label: str) -> str:
    """A label safe inside the link's URL and attribute, within 128 bytes."""
    label = " ".join(_LABEL_BAD.sub(" ", label).split()) or "·"
    if _size(label) > LABEL_LIMIT:
        label, _ = _cut(label, LABEL_LIMIT)
    return label


def menu_link(label: str, choice_id: str | None) -> str:
    """One tappable choice; without a usable id the label alone identifies it."""
    href = f"weixin://bizmsgmenu?msgmenucontent={label}"
    if choice_id is not None and _ID_OK.match(choice_id):
        href += f"&msgmenuid={choice_id}"
    return f'<a href="{href}">{label}</a>'


@dataclass(frozen=True)
class Choices:
    """The links to append to a text, and the label -> choice data map to remember."""

    lines: list[str]
    by_label: dict[str, str]


def render_choices(rows: Sequence[Sequence[tuple[str, str]]]) -> Choices:
    """Rows of (label, choice data) -> one link per line; repeated labels get " 2", " 3"."""
    lines: list[str] = []
    by_label: dict[str, str] = {}
    for row in rows:
        for raw_label, data in row:
            base = clean_label(raw_label)
            label, n = base, 1
            while label in by_label:
                n += 1
                label = f"{base} {n}"
            by_label[label] = data
            lines.append(menu_link(label, data))
    return Choices(lines, by_label)


def text_with_choices(
    text: str, rows: Sequence[Sequence[tuple[str, str]]], limit: int = TEXT_LIMIT
) -> tuple[list[str], dict[str, str]]:
    """Pages of ``text`` followed by its choices (the links on the last pages)."""
    choices = render_choices(rows)
    body = text if not choices.lines else text.rstrip("\n") + "\n\n" + "\n".join(choices.lines)
    return page_text(body, limit), choices.by_label


def tapped_choice(fields: Mapping[str, Any], by_label: Mapping[str, str]) -> str | None:
    """The choice a text message is, if it is a menu-link tap: the id when WeChat sent it,
    else the label looked up in the chat's map; None for ordinary text."""
    menu_id = fields.get("bizmsgmenuid")
    if isinstance(menu_id, str) and menu_id and menu_id in by_label.values():
        return menu_id
    content = fields.get("Content")
    if isinstance(content, str):
        return by_label.get(content.strip())
    return None
