"""The WeChat side of announcements, as every process sees it (WECHAT.md rule 5, issue 10).

On WeChat an announcement is not one message per person but one mass send to all followers
(``sendall``), which a 服务号 follower receives at most 4 times a month. So a broadcast puts one
outbox row for the whole WeChat audience (address ``MASS_ADDRESS``, method ``MASS_METHOD``) beside
the per-person rows of the other channels; the WeChat sender turns it into the mass send, named
``client_msg_id(broadcast)`` so a re-run sends nothing twice, and WeChat's MASSSENDJOBFINISH
report is kept on the mass send's row. This module holds what the admin's conversation and the
progress report read (the month's count, the report); it imports no WeChat library, so the
features may use it (tests/test_architecture.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy import or_, select

from bot.chat.announcements import (  # noqa: F401  (re-exported for the WeChat sender)
    MASS_SENDS_PER_MONTH,
    MONTH_USED,
    MassReport,
)
from bot.storage.chats import utcnow
from bot.storage.db import BotDatabase
from bot.storage.schema import WeChatMassSend

WECHAT = "wechat"
MASS_ADDRESS = "*"  # the outbox row that stands for every WeChat follower
MASS_METHOD = "mass_send"
BEIJING = dt.timezone(dt.timedelta(hours=8))


def client_msg_id(broadcast_id: int) -> str:
    """The ``clientmsgid`` of a broadcast's mass send (<= 64 characters)."""
    return f"gp-bc-{broadcast_id}"


def report_key(msg_id: int) -> str:
    """The row keeping WeChat's MASSSENDJOBFINISH report for ``msg_id`` as it came (the report
    can arrive before the send's row knows its msg_id: store.record_mass_result)."""
    return f"report:{msg_id}"


def mass_dedupe_key(broadcast_id: int) -> str:
    """The outbox dedupe key of a broadcast's mass row (the per-person rows' form)."""
    return f"bc:{broadcast_id}:{WECHAT}:{MASS_ADDRESS}"


def beijing_month(at: dt.datetime | None = None) -> str:
    """``YYYY-MM`` of naive-UTC ``at`` (default now) in Beijing time, where the month turns."""
    moment = (at or utcnow()).replace(tzinfo=dt.UTC).astimezone(BEIJING)
    return f"{moment.year:04d}-{moment.month:02d}"


async def mass_sends_this_month(db: BotDatabase, at: dt.datetime | None = None) -> int:
    """Mass sends that reached (or may have reached) people this Beijing month."""
    async with db.session() as session:
        rows = await session.scalars(
            select(WeChatMassSend.client_msg_id).where(
                WeChatMassSend.month == beijing_month(at),
                or_(WeChatMassSend.state == "sent", WeChatMassSend.state == "sending"),
            )
        )
        return len(list(rows))


async def mass_sends_left(db: BotDatabase) -> int:
    """What the admin is shown before sending: mass sends left this (Beijing) month."""
    return max(0, MASS_SENDS_PER_MONTH - await mass_sends_this_month(db))


async def mass_reports(db: BotDatabase, broadcast_ids: Collection[int]) -> dict[int, MassReport]:
    """The mass send of each broadcast that has one, with WeChat's report when it came."""
    if not broadcast_ids:
        return {}
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(WeChatMassSend).where(WeChatMassSend.broadcast_id.in_(list(broadcast_ids)))
            )
        ).all()
        waiting = [report_key(r.msg_id) for r in rows if r.msg_id and r.job_status is None]
        reports = {
            r.msg_id: r
            for r in (
                await session.scalars(
                    select(WeChatMassSend).where(WeChatMassSend.client_msg_id.in_(waiting))
                )
            ).all()
        } if waiting else {}
    found: dict[int, MassReport] = {}
    for r in rows:
        if r.broadcast_id is None:
            continue
        came = r if r.job_status is not None else reports.get(r.msg_id, r)
        found[int(r.broadcast_id)] = MassReport(
            r.state, r.msg_id, r.error, came.job_status, came.total_count, came.filter_count,
            came.sent_count, came.error_count,
        )
    return found
