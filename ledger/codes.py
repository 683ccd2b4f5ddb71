"""Secrets handed to people: redemption codes, staff invites and API keys.

A redemption code is one uniformly random integer below 10^20 (66.4 bits). It has two spellings
of the same secret — 20 digits for typing and till scanners, and ``r`` + 12 base64url characters
for deep links — so either form finds the one stored hash. Only SHA-256 hashes are stored.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

CODE_SPACE = 10**20
CODE_BYTES = 9  # 10^20 < 2^72
REDEMPTION_PREFIX = "r"
INVITE_PREFIX = "s"
_DIGITS = re.compile(r"^\d{20}$")
_LINK = re.compile(r"^r[A-Za-z0-9_-]{12}$")
_INVITE = re.compile(r"^s[A-Za-z0-9_-]{22}$")
_SEPARATORS = re.compile(r"[\s\-–—]")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_redemption_secret() -> int:
    return secrets.randbelow(CODE_SPACE)


def numeric_form(secret: int) -> str:
    return f"{secret:020d}"


def link_form(secret: int) -> str:
    raw = secret.to_bytes(CODE_BYTES, "big")
    return REDEMPTION_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_redemption_code(text: str) -> int | None:
    """The secret behind either spelling, or None when ``text`` is neither.

    Typed digits may carry spaces or dashes (people group them in fours).
    """
    text = text.strip()
    digits = _SEPARATORS.sub("", text)
    if _DIGITS.match(digits):
        return int(digits)
    if _LINK.match(text):
        value = int.from_bytes(base64.urlsafe_b64decode(text[1:]), "big")
        return value if value < CODE_SPACE else None
    return None


def redemption_hash(secret: int) -> str:
    return sha256_hex("redemption:" + numeric_form(secret))


def new_invite_code() -> str:
    return INVITE_PREFIX + secrets.token_urlsafe(16)[:22]


def is_invite_code(text: str) -> bool:
    return bool(_INVITE.match(text.strip()))


def invite_hash(code: str) -> str:
    return sha256_hex("invite:" + code.strip())


def new_api_key(role: str) -> str:
    return f"gp_{role}_{secrets.token_urlsafe(32)}"


def api_key_hash(key: str) -> str:
    return sha256_hex("apikey:" + key)


def mask(text: str, keep: int = 4) -> str:
    """Enough of a secret to tell two apart in a log, never enough to use it."""
    return text[:keep] + "…" if len(text) > keep else "…"
