"""Our own small aiohttp client for the Official Account API (WECHAT.md "Library").

Why not wechatpy's client: it blocks (requests), hard-codes api.weixin.qq.com in places, and on
40001/42001 it silently fetches a new token from ``/cgi-bin/token``, invalidating the token every
other process holds. Here the base URL is configuration (tests point it at tests/fake_wechat.py),
the token comes from ``/cgi-bin/stable_token`` in normal mode only and lives in the shared bot
database (rule 4), and every errcode surfaces as ``WeChatApiError`` with its number.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from bot.channels.wechat import store
from bot.storage.chats import utcnow
from bot.storage.db import BotDatabase

DEFAULT_BASE_URL = "https://api.weixin.qq.com"
TOKEN_ERRORS = frozenset({40001, 42001, 40014})  # invalid, expired, malformed access_token
OUTSIDE_WINDOW = 45015  # the person opened no window (or unfollowed): rule 2
WINDOW_QUOTA = 45047  # more sends than the window allows
TEMPLATE_QUOTA = 45009  # the day's template (API) quota is used up: rule 3
MASS_QUOTA = 45028  # no mass-send quota left: rule 5
MASS_DUPLICATE = 45065  # this clientmsgid was sent already; the answer names its msg_id
TOKEN_MARGIN = dt.timedelta(minutes=5)  # refresh this long before the cached token expires
TEMPLATE_FIELD_MAX = 20  # characters, since 2023-05


class WeChatApiError(Exception):
    """The platform answered an ``errcode`` other than 0."""

    def __init__(
        self, errcode: int, errmsg: str, path: str, data: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{path}: {errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path
        self.data = dict(data or {})  # the whole answer (45065 carries the first msg_id)


def _is_emoji(ch: str) -> bool:
    code = ord(ch)
    return (
        unicodedata.category(ch) in {"So", "Cs", "Co"}
        or 0x1F000 <= code <= 0x1FAFF
        or 0x2600 <= code <= 0x27BF
        or code in {0x200D, 0xFE0F}
    )


def template_field(value: str) -> str:
    """A template field as WeChat accepts it: one line, no emoji, at most 20 characters
    (rule 3); a longer value ends in "…" so the person sees it was cut."""
    kept = "".join(
        ch
        for ch in value
        if (not _is_emoji(ch) and unicodedata.category(ch) != "Cc") or ch.isspace()
    )
    clean = " ".join(kept.split())
    if len(clean) > TEMPLATE_FIELD_MAX:
        clean = clean[: TEMPLATE_FIELD_MAX - 1] + "…"
    return clean


def check_template_fields(fields: Mapping[str, str]) -> None:
    """Raises ValueError naming the first field WeChat would refuse."""
    for name, value in fields.items():
        if value != template_field(value):
            raise ValueError(f"template field {name!r} must be one line, no emoji, <= 20 chars")


class WeChatApi:
    """One account's API. ``session`` is shared and owned by the caller."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        db: BotDatabase,
        *,
        app_id: str,
        app_secret: str,
        base_url: str = DEFAULT_BASE_URL,
    ) -> None:
        self.session = session
        self.db = db
        self.app_id = app_id
        self._secret = app_secret
        self.base_url = base_url.rstrip("/")
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0  # stable_token calls made by this process

    # --- access token (rule 4) ----------------------------------------------------------

    async def access_token(self) -> str:
        cached = await store.read_token(self.db, self.app_id)
        if cached is not None and cached.expires_at - TOKEN_MARGIN > utcnow():
            return cached.value
        return await self._refresh(rejected=None)

    async def _refresh(self, rejected: str | None) -> str:
        """Re-read the shared cache (another process may have refreshed it), else ask
        ``stable_token`` in normal mode, never ``force_refresh`` (20 a day, and it would
        invalidate every other process's token)."""
        async with self._token_lock:
            cached = await store.read_token(self.db, self.app_id)
            if (
                cached is not None
                and cached.value != rejected
                and cached.expires_at - TOKEN_MARGIN > utcnow()
            ):
                return cached.value
            self.token_fetches += 1
            data = await self._call_raw(
                "/cgi-bin/stable_token",
                None,
                json_body={
                    "grant_type": "client_credential",
                    "appid": self.app_id,
                    "secret": self._secret,
                    "force_refresh": False,
                },
            )
            token = str(data["access_token"])
            stored = await store.store_token(
                self.db, self.app_id, token, int(data.get("expires_in", 7200))
            )
            return stored.value

    # --- transport ----------------------------------------------------------------------

    async def _call_raw(
        self,
        path: str,
        token: str | None,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: aiohttp.FormData | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        query = dict(params or {})
        if token is not None:
            query["access_token"] = token
        body: Any = form
        headers: dict[str, str] = {}
        if json_body is not None:
            # WeChat reads UTF-8 JSON; \\u escapes are shown literally in some clients.
            body = json.dumps(json_body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        async with self.session.post(
            self.base_url + path,
            params=query,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            response.raise_for_status()
            data = json.loads(await response.read())
        if not isinstance(data, dict):
            raise WeChatApiError(-2, "answer is not a JSON object", path)
        errcode = int(data.get("errcode") or 0)
        if errcode:
            raise WeChatApiError(errcode, str(data.get("errmsg", "")), path, data)
        return data

    async def call(
        self,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form_factory: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Call with the shared token; on 40001/42001 re-read the cache, retry once.

        ``form_factory`` builds a fresh multipart body per try (aiohttp consumes one).
        """
        token = await self.access_token()
        for attempt in range(2):
            try:
                return await self._call_raw(
                    path,
                    token,
                    json_body=json_body,
                    form=form_factory() if form_factory else None,
                    params=params,
                )
            except WeChatApiError as exc:
                if exc.errcode not in TOKEN_ERRORS or attempt:
                    raise
                token = await self._refresh(rejected=token)
        raise AssertionError("unreachable")

    # --- the calls the bot makes ----------------------------------------------------------

    async def send_text(self, openid: str, text: str) -> None:
        """A customer-service text; only inside a window (outbound.py reserves it first)."""
        await self.call(
            "/cgi-bin/message/custom/send",
            json_body={"touser": openid, "msgtype": "text", "text": {"content": text}},
        )

    async def send_image(self, openid: str, media_id: str) -> None:
        await self.call(
            "/cgi-bin/message/custom/send",
            json_body={"touser": openid, "msgtype": "image", "image": {"media_id": media_id}},
        )

    async def send_template(
        self, openid: str, template_id: str, fields: Mapping[str, str], url: str | None = None
    ) -> int:
        """A template message; returns its msgid. Raises ValueError for fields WeChat would
        refuse, WeChatApiError 45009 when the day's quota is used up."""
        check_template_fields(fields)
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {name: {"value": value} for name, value in fields.items()},
        }
        if url:
            body["url"] = url
        data = await self.call("/cgi-bin/message/template/send", json_body=body)
        msg_id = int(data["msgid"])
        await store.record_template_send(self.db, msg_id, openid, template_id)
        return msg_id

    async def upload_image(self, png: bytes, filename: str = "picture.png") -> str:
        """Temporary media (3 days) for an image message; returns media_id. The file name
        must be ASCII (non-ASCII gives 41005, wechatpy #293)."""
        if not filename.isascii():
            raise ValueError("media file names must be ASCII")

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("media", png, filename=filename, content_type="image/png")
            return data

        result = await self.call(
            "/cgi-bin/media/upload", form_factory=form, params={"type": "image"}
        )
        return str(result["media_id"])

    async def download_media(self, media_id: str) -> bytes:
        """A temporary media file a person sent (a photo of a code); raises WeChatApiError."""
        token = await self.access_token()
        for attempt in range(2):
            async with self.session.get(
                self.base_url + "/cgi-bin/media/get",
                params={"access_token": token, "media_id": media_id},
                timeout=aiohttp.ClientTimeout(total=20),
            ) as response:
                response.raise_for_status()
                body = await response.read()
                if not response.content_type.startswith(("application/json", "text/plain")):
                    return body
            data = json.loads(body)
            if not isinstance(data, dict):
                raise WeChatApiError(-2, "answer is not a JSON object", "/cgi-bin/media/get")
            errcode = int(data.get("errcode") or 0)
            if errcode in TOKEN_ERRORS and not attempt:
                token = await self._refresh(rejected=token)
                continue
            raise WeChatApiError(errcode, str(data.get("errmsg", "")), "/cgi-bin/media/get")
        raise AssertionError("unreachable")

    async def mass_send_text(self, text: str, client_msg_id: str, tag_id: int | None = None) -> int:
        """An announcement to every follower (or one tag); returns msg_id. The caller checks
        the 4-a-month limit first (outbound.announce)."""
        filter_: dict[str, Any] = (
            {"is_to_all": True} if tag_id is None else {"is_to_all": False, "tag_id": tag_id}
        )
        data = await self.call(
            "/cgi-bin/message/mass/sendall",
            json_body={
                "filter": filter_,
                "msgtype": "text",
                "text": {"content": text},
                "clientmsgid": client_msg_id,
                "send_ignore_reprint": 0,
            },
        )
        return int(data["msg_id"])

    async def create_tag(self, name: str) -> int:
        data = await self.call("/cgi-bin/tags/create", json_body={"tag": {"name": name}})
        return int(data["tag"]["id"])

    async def tag_people(self, tag_id: int, openids: Sequence[str]) -> None:
        await self.call(
            "/cgi-bin/tags/members/batchtagging",
            json_body={"openid_list": list(openids), "tagid": tag_id},
        )

    async def untag_people(self, tag_id: int, openids: Sequence[str]) -> None:
        await self.call(
            "/cgi-bin/tags/members/batchuntagging",
            json_body={"openid_list": list(openids), "tagid": tag_id},
        )

    async def add_conditional_menu(self, buttons: Sequence[Mapping[str, Any]], tag_id: int) -> str:
        """A menu for one tag (rule 8: only tag rules work; one tag per role x language)."""
        data = await self.call(
            "/cgi-bin/menu/addconditional",
            json_body={"button": list(buttons), "matchrule": {"tag_id": str(tag_id)}},
        )
        return str(data["menuid"])

    async def create_qr(self, scene: str, expire_seconds: int | None = None) -> tuple[str, str]:
        """A parametric QR code for ``scene`` (1-64 chars); temporary when ``expire_seconds``
        is given (<= 30 days), else permanent. Returns (ticket, url to encode)."""
        if not 1 <= len(scene) <= 64:
            raise ValueError("a QR scene is 1 to 64 characters")
        body: dict[str, Any] = {"action_info": {"scene": {"scene_str": scene}}}
        if expire_seconds is None:
            body["action_name"] = "QR_LIMIT_STR_SCENE"
        else:
            body["action_name"] = "QR_STR_SCENE"
            body["expire_seconds"] = min(expire_seconds, 30 * 86400)
        data = await self.call("/cgi-bin/qrcode/create", json_body=body)
        return str(data["ticket"]), str(data["url"])
