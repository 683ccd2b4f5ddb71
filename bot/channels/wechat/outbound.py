"""What the bot sends on WeChat outside a passive reply, inside the platform's rules.

- Customer-service messages only in a window the person opened, counted in the shared database
  (WECHAT.md rule 2): a send with no window left is not attempted, so 45015/45047 never happen
  by our own counting; if the platform says them anyway we believe it and close the windows.
- Notices as template messages with structured fields (rule 3); when the day's quota is used up
  (45009) an urgent notice (a receipt) falls back to a service message if a window is open,
  anything else waits for the quota to reset at midnight Beijing time (DESIGN.md "Notices").
- Announcements as mass sends (rule 5): at most 4 a month, and ``clientmsgid`` recorded before the
  call so a re-run sends nothing twice.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.channels.wechat import store
from bot.channels.wechat.api import (
    MASS_DUPLICATE,
    MASS_QUOTA,
    OUTSIDE_WINDOW,
    TEMPLATE_QUOTA,
    WINDOW_QUOTA,
    WeChatApi,
    WeChatApiError,
)
from bot.channels.wechat.endpoint import Outgoing, OutText
from bot.chat.announcements import MASS_SENDS_PER_MONTH, MONTH_USED
from bot.outbox.mass_sends import BEIJING, mass_sends_this_month
from bot.storage.chats import utcnow
from bot.storage.db import BotDatabase

log = logging.getLogger(__name__)
NOT_FOLLOWING = 43004  # the person does not follow the account (any more)


def next_beijing_midnight(now: dt.datetime | None = None) -> dt.datetime:
    """When the daily template quota resets, as naive UTC."""
    local = (now or utcnow()).replace(tzinfo=dt.UTC).astimezone(BEIJING)
    midnight = (local + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(dt.UTC).replace(tzinfo=None)


class CustomerService:
    """Sends replies as service messages; each one first reserves a send in a window."""

    def __init__(self, api: WeChatApi, db: BotDatabase) -> None:
        self.api = api
        self.db = db

    async def send(self, openid: str, outs: Sequence[Outgoing]) -> int:
        """Send in order while windows allow; returns how many went. The rest are dropped
        and logged: a person's window closed is a person who stopped talking to us."""
        sent = 0
        for out in outs:
            if not await store.take_send(self.db, openid):
                log.info("wechat: no service window left for a reply (%d unsent)", len(outs) - sent)
                break
            try:
                if isinstance(out, OutText):
                    await self.api.send_text(openid, out.text)
                else:
                    await self.api.send_image(openid, out.media_id)
            except WeChatApiError as exc:
                if exc.errcode in {OUTSIDE_WINDOW, WINDOW_QUOTA, NOT_FOLLOWING}:
                    await store.close_windows(self.db, openid)
                    log.warning("wechat: platform refused a service message: %s", exc.errcode)
                    break
                raise
            sent += 1
        return sent


class NoticeOutcome(enum.Enum):
    TEMPLATE = "template"  # sent as a template message
    SERVICE = "service"  # quota used up; sent as a service message inside a window
    DEFERRED = "deferred"  # quota used up; try again at ``retry_at``
    NOT_FOLLOWING = "not_following"  # the person unfollowed: mark the chat blocked


@dataclass(frozen=True)
class NoticeResult:
    outcome: NoticeOutcome
    msg_id: int | None = None
    retry_at: dt.datetime | None = None


async def send_notice(
    api: WeChatApi,
    service: CustomerService,
    openid: str,
    template_id: str,
    fields: Mapping[str, str],
    *,
    fallback_text: str,
    urgent: bool,
) -> NoticeResult:
    """One notice to one person. ``fields`` already cleaned by ``api.template_field``;
    ``fallback_text`` (within 2,048 bytes) is used only for an urgent notice on 45009."""
    try:
        msg_id = await api.send_template(openid, template_id, fields)
    except WeChatApiError as exc:
        if exc.errcode == NOT_FOLLOWING:
            return NoticeResult(NoticeOutcome.NOT_FOLLOWING)
        if exc.errcode != TEMPLATE_QUOTA:
            raise
        if urgent and await service.send(openid, [OutText(fallback_text)]) == 1:
            return NoticeResult(NoticeOutcome.SERVICE)
        return NoticeResult(NoticeOutcome.DEFERRED, retry_at=next_beijing_midnight())
    return NoticeResult(NoticeOutcome.TEMPLATE, msg_id=msg_id)


class AnnounceOutcome(enum.Enum):
    SENT = "sent"
    ALREADY = "already"  # this clientmsgid was sent before
    MONTH_USED = "month_used"  # 4 mass sends this month already
    NO_QUOTA = "no_quota"  # the platform said 45028


@dataclass(frozen=True)
class AnnounceResult:
    outcome: AnnounceOutcome
    used_this_month: int
    msg_id: int | None = None


async def announce(
    api: WeChatApi,
    db: BotDatabase,
    text: str,
    client_msg_id: str,
    tag_id: int | None = None,
    broadcast_id: int | None = None,
) -> AnnounceResult:
    """An announcement as one mass send. ``client_msg_id`` (<= 64 chars) names the
    announcement, so running it twice (a crash, a double tap) sends it once: a send already
    recorded ``sent`` is not repeated; one left ``sending`` (we died during the call, so it may
    or may not have gone out) is asked again under the same ``clientmsgid``, which WeChat
    refuses with 45065 and the first msg_id if it went. The month's limit (4) is checked
    before a new send, and the refusal recorded (``mass_sends.MONTH_USED``)."""
    used = await mass_sends_this_month(db)
    earlier = await store.begin_mass_send(db, client_msg_id, broadcast_id)
    if earlier == "sent":
        return AnnounceResult(AnnounceOutcome.ALREADY, used)
    if earlier != "sending" and used >= MASS_SENDS_PER_MONTH:
        await store.finish_mass_send(db, client_msg_id, msg_id=None, error=MONTH_USED)
        return AnnounceResult(AnnounceOutcome.MONTH_USED, used)
    try:
        msg_id = await api.mass_send_text(text, client_msg_id, tag_id)
    except WeChatApiError as exc:
        first = exc.data.get("msg_id")
        if exc.errcode == MASS_DUPLICATE and first is not None:
            await store.finish_mass_send(db, client_msg_id, msg_id=int(first), error=None)
            return AnnounceResult(AnnounceOutcome.ALREADY, used, int(first))
        await store.finish_mass_send(db, client_msg_id, msg_id=None, error=str(exc))
        if exc.errcode == MASS_QUOTA:
            return AnnounceResult(AnnounceOutcome.NO_QUOTA, used)
        raise
    await store.finish_mass_send(db, client_msg_id, msg_id=msg_id, error=None)
    return AnnounceResult(
        AnnounceOutcome.SENT, used + (0 if earlier == "sending" else 1), msg_id
    )
