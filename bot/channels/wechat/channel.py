"""The WeChat channel as the core and the outbox see it (``bot.chat.channel.Channel``).

``answer`` is not how WeChat answers: a delivery's replies go back through the endpoint (one
passive reply, the rest as service messages, endpoint.py); ``answer`` exists for callers that
already missed the passive reply and sends as ``send`` does. ``send`` uses service messages,
only inside windows the person opened (rule 2). ``notify`` sends a notice as a template message
(rule 3); when the day's template quota is used up a receipt falls back to a service message
(written by ``notice_text``, the core's localized notice text), anything else is deferred.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from bot.channels.wechat import store
from bot.channels.wechat.adapter import render
from bot.channels.wechat.api import WeChatApi
from bot.channels.wechat.notices import DEFAULT_KEYS, template_data
from bot.channels.wechat.outbound import CustomerService, NoticeOutcome, send_notice
from bot.channels.wechat.render import page_text
from bot.chat.channel import WECHAT, Capabilities, Channel, ChannelError, PersonGone
from bot.chat.events import Event, Person
from bot.chat.replies import Notice, Reply
from bot.storage.db import BotDatabase

URGENT = frozenset({"redemption.receipt", "voucher.redeemed"})  # what a person waits for
TEMPLATE_OF = {"voucher.digest": "voucher.granted"}
"""Kinds sent with another kind's template: a digest of grants says what a grant does (the sum
and the earliest expiry), so the operator configures one template for both (issue 12)."""


class NoticeDeferred(ChannelError):
    """The day's template quota is used up; ``retry_at`` (naive UTC) is when it resets."""

    def __init__(self, retry_at: object) -> None:
        super().__init__(f"template quota used up; retry at {retry_at}")
        self.retry_at = retry_at


class WeChatChannel:
    def __init__(
        self,
        api: WeChatApi,
        db: BotDatabase,
        templates: Mapping[str, str],
        notice_text: Callable[[Notice, str], str],
        keys: Mapping[str, Mapping[str, str]] = DEFAULT_KEYS,
    ) -> None:
        self.api = api
        self.db = db
        self.service = CustomerService(api, db)
        self.templates = templates  # notice kind -> template id
        self.notice_text = notice_text
        self.keys = keys

    @property
    def capabilities(self) -> Capabilities:
        return WECHAT

    async def answer(self, event: Event, replies: Sequence[Reply]) -> None:
        await self.send(event.person, replies)

    async def send(self, person: Person, replies: Sequence[Reply]) -> None:
        """Raises PersonGone when the person unfollowed, ChannelError when no window is left
        for everything (what was sent stays sent)."""
        rendered = await render(replies, self.api.upload_image)
        if rendered.choices:
            await store.remember_choices(self.db, person.address, rendered.choices)
        sent = await self.service.send(person.address, rendered.outs)
        if sent < len(rendered.outs):
            if await store.unfollowed(self.db, person.address):
                raise PersonGone(person.address)
            raise ChannelError(f"no service window for {len(rendered.outs) - sent} message(s)")

    async def notify(self, person: Person, notice: Notice, locale: str) -> None:
        """Raises PersonGone (unfollowed), NoticeDeferred (quota), ChannelError (no template
        configured for the kind: an operator's choice, reported rather than guessed at)."""
        template_id = self.templates.get(notice.kind) or self.templates.get(
            TEMPLATE_OF.get(notice.kind, notice.kind)
        )
        if template_id is None:
            raise ChannelError(f"no WeChat template configured for {notice.kind}")
        fallback = page_text(self.notice_text(notice, locale))
        result = await send_notice(
            self.api,
            self.service,
            person.address,
            template_id,
            template_data(notice, self.keys),
            fallback_text=fallback[0] if fallback else "",
            urgent=notice.kind in URGENT and bool(fallback),
        )
        if result.outcome is NoticeOutcome.NOT_FOLLOWING:
            raise PersonGone(person.address)
        if result.outcome is NoticeOutcome.DEFERRED:
            raise NoticeDeferred(result.retry_at)


def _conforms(channel: WeChatChannel) -> Channel:
    return channel  # mypy checks WeChatChannel against the core's Channel protocol here
