"""What the WeChat channel keeps in the shared bot database, so every process agrees.

Each function is one short transaction. Times are naive UTC datetimes, as everywhere in the
bot's database. Rules cited by number are those of shared/WECHAT.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.channels.wechat.inbound import FRESH_SECONDS
from bot.outbox.mass_sends import (
    beijing_month,
    report_key,
)
from bot.storage.chats import utcnow
from bot.storage.db import BotDatabase
from bot.storage.schema import (
    WeChatChoice,
    WeChatDelivery,
    WeChatMassSend,
    WeChatTemplateSend,
    WeChatToken,
    WeChatWindow,
)

MESSAGE_WINDOW = dt.timedelta(hours=48)
MESSAGE_WINDOW_SENDS = 5
EVENT_WINDOW = dt.timedelta(minutes=1)
EVENT_WINDOW_SENDS = 3


Executor = AsyncSession | AsyncConnection


def _insert(executor: Executor, table: Any) -> Any:
    """An INSERT that can ignore or update on conflict, in the connection's dialect."""
    bind = executor.get_bind() if isinstance(executor, AsyncSession) else executor
    if bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# --- inbound deliveries (rule 1) ------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """``first`` is True for exactly one delivery of a message across all processes; a repeat
    carries the first one's stored passive reply once it is done (None while it is running)."""

    first: bool
    reply: str | None = None
    choices: dict[str, str] | None = None  # the chat's label -> choice map, when asked for


WindowChange = Literal["message", "event", "unfollow"]


async def claim_delivery(
    db: BotDatabase,
    key: str,
    openid: str,
    window: WindowChange | None = None,
    *,
    with_choices: bool = False,
) -> Claim:
    """Claim a delivery; the first claim also records the window it opens (or the unfollow)
    and, ``with_choices`` (a text, which may be a tapped menu link), reads the chat's label ->
    choice map, in the same transaction: the conversation needs no transaction of its own to
    read it, so a delivery costs two transactions, this and finish_delivery (each one a BEGIN,
    a commit and the pool's reset: hand-offs to the SQLite driver's thread add up)."""
    # On the hot path: a Core connection, not an ORM session (a session costs more to build
    # than these statements take to run).
    async with db.engine.begin() as conn:
        stmt = (
            _insert(conn, WeChatDelivery)
            .values(key=key, openid=openid, state="processing", created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["key"])
        )
        result = await conn.execute(stmt)
        if result.rowcount == 1:
            if window == "unfollow":
                await _mark_unfollowed(conn, openid)
            elif window is not None:
                await _open_window(conn, openid, by_message=window == "message")
            if not with_choices:
                return Claim(first=True)
            rows = await conn.execute(
                select(WeChatChoice.label, WeChatChoice.data).where(WeChatChoice.openid == openid)
            )
            return Claim(first=True, choices={str(r[0]): str(r[1]) for r in rows})
        # A retry while the first is still running means WeChat stopped waiting for it:
        # tell the first to send its reply as service messages instead (finish_delivery).
        await conn.execute(
            update(WeChatDelivery)
            .where(WeChatDelivery.key == key, WeChatDelivery.state == "processing")
            .values(state="retried")
        )
        row = (
            await conn.execute(
                select(WeChatDelivery.state, WeChatDelivery.reply).where(WeChatDelivery.key == key)
            )
        ).first()
        reply = row.reply if row is not None and row.state == "done" else None
        return Claim(first=False, reply=reply)


async def finish_delivery(db: BotDatabase, key: str, reply: str | None) -> bool:
    """Keep the passive reply (plain XML, or None when it went as service messages).

    Returns False when WeChat retried meanwhile: nobody waits for this answer any more, so
    the caller sends the reply as service messages (and stores none for later retries).
    """
    async with db.engine.begin() as conn:
        result = await conn.execute(
            update(WeChatDelivery)
            .where(WeChatDelivery.key == key, WeChatDelivery.state == "processing")
            .values(state="done", reply=reply)
        )
        if result.rowcount == 1:
            return True
        await conn.execute(
            update(WeChatDelivery).where(WeChatDelivery.key == key).values(state="done")
        )
        return False


async def purge_deliveries(db: BotDatabase, older_than: dt.timedelta) -> int:
    """Forget deliveries past any retry (WeChat retries within ~15 s); returns rows removed.

    A row must outlive every moment its delivery could still be accepted: the endpoint takes a
    timestamp up to ``FRESH_SECONDS`` either side of its clock, so a replay stays acceptable for
    up to twice that after the row was made. Raises ValueError for a shorter ``older_than``.
    """
    if older_than < dt.timedelta(seconds=2 * FRESH_SECONDS):
        raise ValueError(f"deliveries must be kept at least {2 * FRESH_SECONDS} s")
    async with db.session() as session:
        result = await session.execute(
            delete(WeChatDelivery).where(WeChatDelivery.created_at < utcnow() - older_than)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


# --- the shared access token (rule 4) -------------------------------------------------------


@dataclass(frozen=True)
class CachedToken:
    value: str
    expires_at: dt.datetime


async def read_token(db: BotDatabase, app_id: str) -> CachedToken | None:
    async with db.session() as session:
        row = await session.get(WeChatToken, app_id)
        return None if row is None else CachedToken(row.access_token, row.expires_at)


async def store_token(db: BotDatabase, app_id: str, token: str, expires_in: int) -> CachedToken:
    """Store a token from ``stable_token``; ``expires_in`` in seconds."""
    now = utcnow()
    expires_at = now + dt.timedelta(seconds=expires_in)
    async with db.session() as session:
        stmt = _insert(session, WeChatToken).values(
            app_id=app_id, access_token=token, expires_at=expires_at, fetched_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["app_id"],
            set_={"access_token": token, "expires_at": expires_at, "fetched_at": now},
        )
        await session.execute(stmt)
    return CachedToken(token, expires_at)


# --- customer-service windows (rule 2) ------------------------------------------------------


async def open_window(db: BotDatabase, openid: str, *, by_message: bool) -> None:
    """A message opens 5 sends in 48 h, a click/scan/follow 3 in 1 minute; a follow also
    lifts an unfollow (rule 12)."""
    async with db.session() as session:
        await _open_window(session, openid, by_message=by_message)


async def _open_window(session: Executor, openid: str, *, by_message: bool) -> None:
    now = utcnow()
    values: dict[str, Any] = (
        {"message_at": now, "message_sent": 0} if by_message else {"event_at": now, "event_sent": 0}
    )
    values["unfollowed_at"] = None
    stmt = _insert(session, WeChatWindow).values(
        {"openid": openid, "message_sent": 0, "event_sent": 0} | values
    )
    await session.execute(stmt.on_conflict_do_update(index_elements=["openid"], set_=values))


async def mark_unfollowed(db: BotDatabase, openid: str) -> None:
    async with db.session() as session:
        await _mark_unfollowed(session, openid)


async def _mark_unfollowed(session: Executor, openid: str) -> None:
    now = utcnow()
    stmt = _insert(session, WeChatWindow).values(
        openid=openid, message_sent=0, event_sent=0, unfollowed_at=now
    )
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["openid"], set_={"unfollowed_at": now})
    )


async def unfollowed(db: BotDatabase, openid: str) -> bool:
    async with db.session() as session:
        at = await session.scalar(
            select(WeChatWindow.unfollowed_at).where(WeChatWindow.openid == openid)
        )
        return at is not None


async def take_send(db: BotDatabase, openid: str) -> bool:
    """Reserve one customer-service send in a window the person opened; False = none left.

    The short event window is used first, so the 48-hour allowance lasts. A single UPDATE
    with the limits in its WHERE makes the count exact across processes.
    """
    now = utcnow()
    async with db.session() as session:
        for at, sent, span, limit in (
            (WeChatWindow.event_at, WeChatWindow.event_sent, EVENT_WINDOW, EVENT_WINDOW_SENDS),
            (
                WeChatWindow.message_at,
                WeChatWindow.message_sent,
                MESSAGE_WINDOW,
                MESSAGE_WINDOW_SENDS,
            ),
        ):
            result = await session.execute(
                update(WeChatWindow)
                .where(
                    WeChatWindow.openid == openid,
                    WeChatWindow.unfollowed_at.is_(None),
                    at > now - span,
                    sent < limit,
                )
                .values({sent: sent + 1})
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return True
    return False


async def close_windows(db: BotDatabase, openid: str) -> None:
    """The platform said 45015/45047: believe it over our count until the person writes."""
    async with db.session() as session:
        await session.execute(
            update(WeChatWindow)
            .where(WeChatWindow.openid == openid)
            .values(message_sent=MESSAGE_WINDOW_SENDS, event_sent=EVENT_WINDOW_SENDS)
        )


# --- the per-chat label -> choice map (rule 7) ---------------------------------------------


async def remember_choices(db: BotDatabase, openid: str, choices: Mapping[str, str]) -> None:
    """Replace the chat's offered choices (label -> choice data); labels are unique."""
    now = utcnow()
    async with db.session() as session:
        await session.execute(delete(WeChatChoice).where(WeChatChoice.openid == openid))
        if choices:
            await session.execute(
                _insert(session, WeChatChoice),
                [
                    {"openid": openid, "label": label, "data": data, "created_at": now}
                    for label, data in choices.items()
                ],
            )


async def choice_map(db: BotDatabase, openid: str) -> dict[str, str]:
    """The chat's label -> choice data map (what a menu-link tap without id is matched by)."""
    async with db.session() as session:
        rows = await session.execute(
            select(WeChatChoice.label, WeChatChoice.data).where(WeChatChoice.openid == openid)
        )
        return {str(row[0]): str(row[1]) for row in rows}


async def choice_for_label(db: BotDatabase, openid: str, label: str) -> str | None:
    async with db.session() as session:
        return await session.scalar(
            select(WeChatChoice.data).where(
                WeChatChoice.openid == openid, WeChatChoice.label == label
            )
        )


# --- template messages (rule 3) -------------------------------------------------------------


async def record_template_send(db: BotDatabase, msg_id: int, openid: str, template_id: str) -> None:
    """Note a template message the API accepted. Its result event may have come first (they
    are quick, and bursty): then only the template id is added, the result is kept."""
    async with db.session() as session:
        stmt = _insert(session, WeChatTemplateSend).values(
            msg_id=msg_id,
            openid=openid,
            template_id=template_id,
            status="sent",
            created_at=utcnow(),
        )
        await session.execute(
            stmt.on_conflict_do_update(index_elements=["msg_id"], set_={"template_id": template_id})
        )


async def record_template_result(db: BotDatabase, msg_id: int, openid: str, status: str) -> None:
    """Store a ``TEMPLATESENDJOBFINISH`` status (``success``, ``failed:user block``, ...)."""
    now = utcnow()
    async with db.session() as session:
        stmt = _insert(session, WeChatTemplateSend).values(
            msg_id=msg_id,
            openid=openid[:64],
            template_id="",
            status=status[:40],
            created_at=now,
            finished_at=now,
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["msg_id"], set_={"status": status[:40], "finished_at": now}
            )
        )


async def template_status(db: BotDatabase, msg_id: int) -> str | None:
    async with db.session() as session:
        return await session.scalar(
            select(WeChatTemplateSend.status).where(WeChatTemplateSend.msg_id == msg_id)
        )


# --- mass sends (rule 5) --------------------------------------------------------------------


async def begin_mass_send(
    db: BotDatabase, client_msg_id: str, broadcast_id: int | None = None
) -> str | None:
    """Record a mass send (of ``broadcast_id``, if it carries one) before calling the API;
    returns the state of an earlier attempt with the same id, None when this one is new."""
    async with db.session() as session:
        stmt = _insert(session, WeChatMassSend).values(
            client_msg_id=client_msg_id,
            month=beijing_month(),
            state="sending",
            created_at=utcnow(),
            broadcast_id=broadcast_id,
        )
        result = await session.execute(
            stmt.on_conflict_do_nothing(index_elements=["client_msg_id"])
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return None
        return await session.scalar(
            select(WeChatMassSend.state).where(and_(WeChatMassSend.client_msg_id == client_msg_id))
        )


async def finish_mass_send(
    db: BotDatabase, client_msg_id: str, *, msg_id: int | None, error: str | None
) -> None:
    async with db.session() as session:
        await session.execute(
            update(WeChatMassSend)
            .where(WeChatMassSend.client_msg_id == client_msg_id)
            .values(
                state="failed" if error else "sent",
                msg_id=msg_id,
                error=None if error is None else error[:200],
            )
        )


async def record_mass_result(db: BotDatabase, msg_id: int, fields: Mapping[str, Any]) -> bool:
    """Keep a MASSSENDJOBFINISH report (``Status``; ``TotalCount``, ``FilterCount``,
    ``SentCount``, ``ErrorCount`` in people) for the mass send WeChat numbered ``msg_id``.

    The report may come before the send's own call has returned and stored that msg_id (the
    platform is quick, the events bursty), so it is always also kept in a row of its own,
    ``report_key(msg_id)`` in state ``report`` (never counted against the month), which
    ``mass_sends.mass_reports`` reads when the send's row has no report yet. Returns whether a
    send of ours already carried the msg_id. Recording twice is harmless, so the endpoint
    answers these without the dedupe claim."""

    def count(name: str) -> int | None:
        value = str(fields.get(name) or "").strip()
        return int(value) if value.isdigit() else None

    report: dict[str, Any] = {
        "job_status": str(fields.get("Status") or "")[:40],
        "total_count": count("TotalCount"),
        "filter_count": count("FilterCount"),
        "sent_count": count("SentCount"),
        "error_count": count("ErrorCount"),
        "finished_at": utcnow(),
    }
    async with db.session() as session:
        result = await session.execute(
            update(WeChatMassSend).where(WeChatMassSend.msg_id == msg_id).values(report)
        )
        stmt = _insert(session, WeChatMassSend).values(
            client_msg_id=report_key(msg_id),
            month=beijing_month(),
            state="report",
            msg_id=msg_id,
            created_at=utcnow(),
            **report,
        )
        await session.execute(
            stmt.on_conflict_do_update(index_elements=["client_msg_id"], set_=report)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
