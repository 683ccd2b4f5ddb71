"""Link codes as the features speak of them (issue 10): what a person types, what a claim
came to. The codes' storage and throttle are ``bot.storage.links``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

ChatKey = tuple[str, str]  # (channel, address), as bot.storage.chats keys a person

CODE_DIGITS = 8
CODE_TTL = dt.timedelta(minutes=10)

Outcome = Literal[
    "claimed",  # the code is this chat's to use now
    "wrong",  # no such code (counts against the throttle)
    "expired",
    "used",  # another chat used it
    "throttled",  # too many wrong codes: ``retry_at`` says when the window ends
    "self",  # the chat that asked for it typed it
    "same_channel",  # typed on the channel it came from: it joins two channels
    "already",  # this chat already leads to the code's member
    "taken",  # the code's member already has another chat on this channel
]


@dataclass(frozen=True)
class Issued:
    code: str  # the digits, shown once
    expires_at: dt.datetime


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    code_hash: str = ""
    member_id: int | None = None  # the code's member (the one the typer joins)
    issuer: ChatKey | None = None
    retry_at: dt.datetime | None = None


def digits(text: str) -> str | None:
    """The code in what a person typed: spaces and dashes ignored, full-width digits read as
    digits (a Chinese keyboard types them); None unless exactly ``CODE_DIGITS`` digits."""
    kept = [ch for ch in text if not ch.isspace() and ch not in "-‐－"]
    if len(kept) != CODE_DIGITS or not all(ch.isdecimal() for ch in kept):
        return None
    return "".join(str(int(ch)) for ch in kept)
