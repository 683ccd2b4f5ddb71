"""One delivery through the conversation: WeChat in, core event, feature, core replies, WeChat
out. This is the endpoint's handler (endpoint.Handler).

The feature side is handed in as ``run``: the core's router and turn, which find the person's
profile and language and return the replies a feature said. Keeping it a parameter is what lets
the WeChat channel be wired before the core's chat storage addresses people by (channel, openid)
(DESIGN.md "The conversation core"); the tests drive it with scripted features.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from bot.channels.wechat import store
from bot.channels.wechat.adapter import render, to_event
from bot.channels.wechat.api import WeChatApi
from bot.channels.wechat.endpoint import Outgoing
from bot.channels.wechat.inbound import Inbound
from bot.chat.events import Event, PhotoFetch
from bot.chat.replies import Reply
from bot.storage.db import BotDatabase

Run = Callable[[Event], Awaitable[Sequence[Reply]]]


class WeChatConversation:
    def __init__(self, api: WeChatApi, db: BotDatabase, run: Run) -> None:
        self.api = api
        self.db = db
        self.run = run

    def _photo(self, media_id: str) -> PhotoFetch:
        async def fetch() -> bytes:
            return await self.api.download_media(media_id)

        return fetch

    async def __call__(self, inbound: Inbound) -> Sequence[Outgoing]:
        by_label = inbound.choices
        if by_label is None:  # not read with the claim (the endpoint reads it for texts)
            by_label = (
                await store.choice_map(self.db, inbound.openid)
                if inbound.msg_type == "text"
                else {}
            )
        event = to_event(inbound, by_label, self._photo)
        if event is None:
            return []
        replies = await self.run(event)
        rendered = await render(replies, self.api.upload_image)
        if rendered.choices:
            await store.remember_choices(self.db, inbound.openid, rendered.choices)
        return rendered.outs
