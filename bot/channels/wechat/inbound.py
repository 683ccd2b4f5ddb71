"""Reading what WeChat posts to us, and sealing our passive replies (WECHAT.md rules 1, 6).

wechatpy does the platform's parts: the signature check, safe-mode AES (``msg_signature``, not
``signature``: wechatpy #739) and the typed messages and events. This module adds what a server
must decide for itself: which failures are the sender's fault, and the delivery key under which
retries are recognised.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage
from wechatpy.replies import ImageReply, TextReply
from wechatpy.utils import check_signature

# Deliveries are accepted this many seconds either side of our clock. WeChat's own retries end
# within ~15 s of the first try (5 s deadline, 3 tries), so 300 s leaves room for clock skew;
# anything older is a replay of a captured request (the signature covers the timestamp, so it
# cannot be refreshed without the token), and must stay refused after its dedupe row is gone
# (store.purge_deliveries keeps rows longer than this window).
FRESH_SECONDS = 300


class BadSignature(Exception):
    """The request is not from WeChat (or not for this account's token): answer 403."""


class Stale(BadSignature):
    """Correctly signed, but its ``timestamp`` is outside the freshness window (a replay, or a
    clock far off): answer 403 like a bad signature."""


class BadRequest(Exception):
    """Signed, but not a message we can read (XML, encryption, fields): answer 400."""


@dataclass(frozen=True)
class Inbound:
    """One delivery: the typed wechatpy message, its raw fields and its dedupe key."""

    message: BaseMessage
    fields: Mapping[str, Any]
    key: str
    openid: str
    # The chat's label -> choice map for a text, read with the delivery's claim (store.py);
    # None when not read (the conversation then reads it itself).
    choices: Mapping[str, str] | None = None

    @property
    def msg_type(self) -> str:
        return str(self.fields.get("MsgType", "")).lower()

    @property
    def event(self) -> str:
        return str(self.fields.get("Event", "")).lower()


def delivery_key(fields: Mapping[str, Any]) -> str:
    """SHA-256 hex of FromUserName + (MsgId, or CreateTime + Event + EventKey).

    Both halves are needed (rule 1: MsgId alone and FromUserName + CreateTime alone have both
    collided, WxJava #333, #858). ``TEMPLATESENDJOBFINISH`` carries ``MsgID`` (capital D) and
    no EventKey: two jobs finishing in one second for one person would collide without it.
    """
    sender = str(fields.get("FromUserName") or "")
    msg_id = fields.get("MsgId") or fields.get("MsgID")
    if msg_id:
        part = f"id:{msg_id}"
    else:
        part = "ev:{}|{}|{}".format(
            fields.get("CreateTime") or "", fields.get("Event") or "", fields.get("EventKey") or ""
        )
    return hashlib.sha256(f"{sender}\x00{part}".encode()).hexdigest()


def cdata_safe(text: str) -> str:
    """Text placed inside CDATA must not contain ``]]>`` (rule 6)."""
    while "]]>" in text:
        text = text.replace("]]>", "]] >")
    return text


class InboundCodec:
    """Verifies, decrypts and parses deliveries; seals replies in safe mode.

    ``aes_key`` is the 43-character EncodingAESKey; None = plaintext mode. In safe mode a
    delivery without encryption is refused, so a leaked token alone cannot forge messages.
    ``fresh_seconds``: how far a delivery's ``timestamp`` may be from ``clock()`` (Unix
    seconds; injected in tests) before it is refused as stale.
    """

    def __init__(
        self,
        token: str,
        app_id: str,
        aes_key: str | None,
        *,
        fresh_seconds: float = FRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.app_id = app_id
        self.crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None
        self.fresh_seconds = fresh_seconds
        self.clock = clock

    def _check(self, query: Mapping[str, str]) -> None:
        try:
            check_signature(
                self.token,
                query.get("signature", ""),
                query.get("timestamp", ""),
                query.get("nonce", ""),
            )
        except InvalidSignatureException as exc:
            raise BadSignature("signature does not match") from exc

    def verify_url(self, query: Mapping[str, str]) -> str:
        """The URL check WeChat makes when the server address is saved: echo ``echostr``."""
        self._check(query)
        return query.get("echostr", "")

    def _check_fresh(self, query: Mapping[str, str]) -> None:
        """Only deliveries: the URL check's echo is harmless to replay."""
        stamp = query.get("timestamp", "")
        if not stamp.isdigit() or abs(int(stamp) - self.clock()) > self.fresh_seconds:
            raise Stale(f"timestamp {stamp[:12]!r} outside {self.fresh_seconds:.0f} s")

    def open(self, query: Mapping[str, str], body: bytes) -> Inbound:
        """Raises BadSignature (403; Stale for a signed delivery outside the freshness window)
        or BadRequest (400)."""
        self._check(query)
        self._check_fresh(query)
        xml: str | bytes = body
        if self.crypto is not None:
            if query.get("encrypt_type") != "aes" or not query.get("msg_signature"):
                raise BadRequest("safe mode: the delivery is not encrypted")
            try:
                xml = self.crypto.decrypt_message(
                    body,
                    query["msg_signature"],
                    query.get("timestamp", ""),
                    query.get("nonce", ""),
                )
            except InvalidSignatureException as exc:
                raise BadSignature("msg_signature does not match") from exc
            except (InvalidAppIdException, ExpatError, ValueError, KeyError, TypeError) as exc:
                raise BadRequest(f"cannot decrypt: {type(exc).__name__}") from exc
        try:
            parsed = xmltodict.parse(xml, disable_entities=True)
            fields = parsed["xml"]
            if not isinstance(fields, dict):
                raise TypeError("empty <xml>")
            openid = fields["FromUserName"]
            if not isinstance(openid, str) or not isinstance(fields["MsgType"], str):
                raise TypeError("FromUserName and MsgType must be text")
            if not 0 < len(openid) <= 64:
                raise ValueError("FromUserName must be 1 to 64 characters")
            message = parse_message(xml)
        except (ExpatError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadRequest(f"unreadable message: {type(exc).__name__}") from exc
        return Inbound(message, fields, delivery_key(fields), openid)

    def seal(self, reply_xml: str) -> str:
        """Encrypt a passive reply in safe mode; plaintext mode answers it as is."""
        if self.crypto is None:
            return reply_xml
        return str(
            self.crypto.encrypt_message(reply_xml, secrets.token_hex(8), str(int(time.time())))
        )


def text_reply(inbound: Inbound, text: str) -> str:
    """A passive text reply (plain XML); the text must already fit 2,048 bytes."""
    return str(TextReply(content=cdata_safe(text), message=inbound.message).render())


def image_reply(inbound: Inbound, media_id: str) -> str:
    return str(ImageReply(media_id=media_id, message=inbound.message).render())
