"""Announcements to everyone (or one language): drafts, batched enqueueing, progress, cancel.

The audience is never loaded into memory: each batch is one ``INSERT … SELECT`` of the next
slice of chats by id, in one transaction with the saved cursor, so twelve million recipients
cost the same memory as twelve, and a restart resumes from the cursor. Chats that blocked the
bot are counted as blocked at once and not enqueued; people with notices off are not in the
audience (the bot never speaks first to them).

WeChat followers are not in the per-person audience: an announcement to everyone reaches them
as one mass send (``bot.outbox.mass_sends``), enqueued as a single row when the last slice is
in, and the broadcast is done once that row is settled too. A mass send goes to every follower
(the platform cannot leave out those with notices off), and only announcements to everyone use
one: a language's followers have no tag of their own to send to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, and_, func, insert, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.chat.announcements import EVERYONE, Progress
from bot.outbox.mass_sends import (
    MASS_ADDRESS,
    MASS_METHOD,
    WECHAT,
    mass_dedupe_key,
    mass_reports,
    mass_sends_left,
)
from bot.storage import outbox
from bot.storage.chats import utcnow
from bot.storage.db import BotDatabase
from bot.storage.outbox import BULK, Claimed, Outcome, Outgoing
from bot.storage.schema import Broadcast, Chat, OutboxMessage

BATCH = 5000
ACTIVE = ("enqueuing", "sending")


def _audience_filter(audience: str) -> ColumnElement[bool]:
    """The per-person audience: WeChat followers get a mass send instead."""
    people = and_(Chat.notices.is_(True), Chat.channel != WECHAT)
    if audience == EVERYONE:
        return people
    return and_(people, Chat.locale == audience)


def _followers() -> ColumnElement[bool]:
    """WeChat chats a mass send reaches: everyone who has not unfollowed."""
    return and_(Chat.channel == WECHAT, Chat.blocked_at.is_(None))


class Broadcasts:
    def __init__(self, db: BotDatabase) -> None:
        self.db = db

    async def audience_size(self, audience: str) -> int:
        async with self.db.session() as session:
            count = await session.scalar(
                select(func.count()).select_from(Chat).where(_audience_filter(audience))
            )
        return int(count or 0)

    async def mass_sends_left(self) -> int:
        """WeChat mass sends left this (Beijing) month, shown to the admin before sending."""
        return await mass_sends_left(self.db)

    async def wechat_followers(self, audience: str) -> int:
        """WeChat followers a broadcast to ``audience`` reaches by mass send (0 unless it is to
        everyone), as far as the bot knows them (people who wrote or followed since)."""
        if audience != EVERYONE:
            return 0
        async with self.db.session() as session:
            count = await session.scalar(select(func.count()).select_from(Chat).where(_followers()))
        return int(count or 0)

    async def audience_sizes(self) -> dict[str, int]:
        """Recipients per language and in all, in one pass over the chats."""
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(Chat.locale, func.count())
                    .where(_audience_filter(EVERYONE))
                    .group_by(Chat.locale)
                )
            ).all()
        sizes = {str(locale): int(count) for locale, count in rows}
        sizes[EVERYONE] = sum(sizes.values())
        return sizes

    async def create(
        self, admin: tuple[str, str], text: str, photo: str | None, audience: str
    ) -> int:
        """A broadcast ready to enqueue; sending starts as soon as the first batch is in."""
        now = utcnow()
        async with self.db.session() as session:
            broadcast_id = await session.scalar(
                insert(Broadcast)
                .values(
                    admin_channel=admin[0],
                    admin_address=admin[1],
                    text=text,
                    photo=photo,
                    audience=audience,
                    state="enqueuing",
                    total=0,
                    sent=0,
                    blocked=0,
                    failed=0,
                    enqueue_channel="",
                    enqueue_address="",
                    created_at=now,
                    started_at=now,
                )
                .returning(Broadcast.id)
            )
        assert broadcast_id is not None
        return int(broadcast_id)

    async def set_progress_message(self, broadcast_id: int, message_id: int) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id)
                .values(progress_message_id=message_id)
            )

    async def enqueue_batch(self, broadcast_id: int, batch: int = BATCH) -> bool:
        """Enqueue the next slice of the audience; False once everyone is in (or cancelled)."""
        async with self.db.session() as session:
            row = await session.get(Broadcast, broadcast_id, with_for_update=True)
            if row is None or row.state != "enqueuing":
                return False
            audience = _audience_filter(row.audience)
            key = tuple_(Chat.channel, Chat.address)
            after = tuple_(literal(row.enqueue_channel), literal(row.enqueue_address))
            found = (
                await session.execute(
                    select(Chat.channel, Chat.address)
                    .where(audience, key > after)
                    .order_by(Chat.channel, Chat.address)
                    .offset(batch - 1)
                    .limit(1)
                )
            ).first()
            upper = (str(found[0]), str(found[1])) if found is not None else None
            in_slice = and_(audience, key > after)
            if upper is not None:
                in_slice = and_(in_slice, key <= tuple_(literal(upper[0]), literal(upper[1])))
            blocked = await session.scalar(
                select(func.count()).select_from(Chat).where(in_slice, Chat.blocked_at.is_not(None))
            )
            method = "sendPhoto" if row.photo else "sendMessage"
            now = utcnow()
            source = select(
                Chat.channel,
                Chat.address,
                literal(f"bc:{broadcast_id}:") + Chat.channel + literal(":") + Chat.address,
                literal("broadcast"),
                literal(BULK),
                literal(broadcast_id),
                literal(method),
                literal({}, JSON),
                literal("pending"),
                literal(0),
                literal(now),
                literal(now),
            ).where(in_slice, Chat.blocked_at.is_(None))
            result = await session.execute(
                insert(OutboxMessage).from_select(
                    [
                        "channel",
                        "address",
                        "dedupe_key",
                        "kind",
                        "priority",
                        "broadcast_id",
                        "method",
                        "payload",
                        "state",
                        "attempts",
                        "not_before",
                        "created_at",
                    ],
                    source,
                )
            )
            added = int(getattr(result, "rowcount", 0) or 0)
            row.total += added + int(blocked or 0)
            row.blocked += int(blocked or 0)
            if upper is None:
                row.state = "sending"
                if row.audience == EVERYONE and await session.scalar(
                    select(func.count()).select_from(Chat).where(_followers())
                ):
                    await outbox.enqueue(session, [_mass_row(broadcast_id)])
            else:
                row.enqueue_channel, row.enqueue_address = upper
        return upper is not None

    async def enqueue_all(self, broadcast_id: int) -> None:
        while await self.enqueue_batch(broadcast_id):
            pass

    async def cancel(self, broadcast_id: int) -> bool:
        """Stop a running broadcast: nothing more is enqueued or sent; True if it was running."""
        async with self.db.session() as session:
            row = await session.get(Broadcast, broadcast_id, with_for_update=True)
            if row is None or row.state not in ACTIVE:
                return False
            row.state = "cancelled"
            row.finished_at = utcnow()
            pending = and_(
                OutboxMessage.broadcast_id == broadcast_id, OutboxMessage.state == "pending"
            )
            result = await session.execute(
                update(OutboxMessage)
                .where(pending, OutboxMessage.address != MASS_ADDRESS)
                .values(state=outbox.SKIPPED, last_error="broadcast cancelled")
            )
            row.skipped += int(getattr(result, "rowcount", 0) or 0)
            await session.execute(  # the mass send is no recipient of its own
                update(OutboxMessage)
                .where(OutboxMessage.dedupe_key == mass_dedupe_key(broadcast_id), pending)
                .values(state=outbox.SKIPPED, last_error="broadcast cancelled")
            )
        return True

    async def _with_wechat(self, found: list[Progress]) -> list[Progress]:
        reports = await mass_reports(self.db, [p.id for p in found])
        return [dataclasses.replace(p, wechat=reports.get(p.id)) for p in found]

    async def progress(self, broadcast_id: int) -> Progress | None:
        async with self.db.session() as session:
            row = await session.get(Broadcast, broadcast_id)
        return (await self._with_wechat([_progress(row)]))[0] if row is not None else None

    async def finish_if_done(self, broadcast_id: int) -> Progress | None:
        """Mark a fully enqueued broadcast done once every recipient has an outcome and its
        WeChat mass send, if any, was made or refused."""
        async with self.db.session() as session:
            row = await session.get(Broadcast, broadcast_id, with_for_update=True)
            if row is None:
                return None
            settled = row.sent + row.blocked + row.failed + row.skipped
            if row.state == "sending" and settled >= row.total:
                mass_state = await session.scalar(
                    select(OutboxMessage.state).where(
                        OutboxMessage.dedupe_key == mass_dedupe_key(broadcast_id)
                    )
                )
                if mass_state not in {outbox.PENDING, outbox.SENDING}:
                    row.state = "done"
                    row.finished_at = utcnow()
            progress = _progress(row)
        return (await self._with_wechat([progress]))[0]

    async def recent(self, limit: int = 10) -> list[Progress]:
        async with self.db.session() as session:
            rows = (
                await session.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit))
            ).all()
        return await self._with_wechat([_progress(r) for r in rows])

    async def active(self) -> list[int]:
        async with self.db.session() as session:
            return list(
                (
                    await session.scalars(
                        select(Broadcast.id)
                        .where(Broadcast.state.in_(ACTIVE))
                        .order_by(Broadcast.id)
                    )
                ).all()
            )

    async def contents(
        self, broadcast_ids: set[int]
    ) -> dict[int, tuple[str, dict[str, Any]] | None]:
        """What each broadcast's recipients get; None for a cancelled (or unknown) one."""
        async with self.db.session() as session:
            rows = (
                await session.scalars(select(Broadcast).where(Broadcast.id.in_(broadcast_ids)))
            ).all()
        found = {r.id: r for r in rows}
        return {
            b: message_for(found[b].text, found[b].photo)
            if b in found and found[b].state != "cancelled"
            else None
            for b in broadcast_ids
        }

    async def resolve(
        self, rows: Sequence[Claimed]
    ) -> dict[int, tuple[str, dict[str, Any]] | None]:
        """The sender's content hook for broadcast rows (their payload lives here, not per row)."""
        contents = await self.contents({r.broadcast_id for r in rows if r.broadcast_id})
        return {r.id: contents.get(r.broadcast_id) if r.broadcast_id else None for r in rows}


def _mass_row(broadcast_id: int) -> Outgoing:
    """The one outbox row standing for every WeChat follower (the WeChat sender's)."""
    return Outgoing(
        channel=WECHAT,
        address=MASS_ADDRESS,
        method=MASS_METHOD,
        payload={},
        kind="broadcast",
        dedupe_key=mass_dedupe_key(broadcast_id),
        priority=BULK,
        broadcast_id=broadcast_id,
    )


def message_for(text: str, photo: str | None) -> tuple[str, dict[str, Any]]:
    if photo:
        return "sendPhoto", {"photo": photo, "caption": text}
    return "sendMessage", {"text": text}


def _progress(row: Broadcast) -> Progress:
    return Progress(
        id=row.id,
        state=row.state,
        audience=row.audience,
        total=row.total,
        sent=row.sent,
        blocked=row.blocked,
        failed=row.failed,
        skipped=row.skipped,
        enqueued_all=row.state != "enqueuing",
        started_at=row.started_at,
        finished_at=row.finished_at,
        admin=(row.admin_channel, row.admin_address),
        progress_message_id=row.progress_message_id,
        text=row.text,
    )


_COUNTERS = {
    outbox.SENT: "sent",
    outbox.BLOCKED: "blocked",
    outbox.FAILED: "failed",
    outbox.SKIPPED: "skipped",
}


async def record_outcomes(session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
    """The sender's outcome hook: count final outcomes per broadcast, in the same transaction
    that records them on the rows, so the counters can never drift from the rows."""
    per: dict[int, dict[str, int]] = {}
    for o in outcomes:
        column = _COUNTERS.get(o.state)
        if column is None or o.row.broadcast_id is None or o.row.address == MASS_ADDRESS:
            continue  # a retry later, not a broadcast, or WeChat's mass send (no recipient)
        tally = per.setdefault(o.row.broadcast_id, {})
        tally[column] = tally.get(column, 0) + 1
    for broadcast_id, tally in per.items():
        await session.execute(
            update(Broadcast)
            .where(Broadcast.id == broadcast_id)
            .values({column: getattr(Broadcast, column) + n for column, n in tally.items()})
        )
