"""One-time link codes that join a person's WeChat and Telegram chats into one member, and the
channel a linked member's notices go to (issue 10; DESIGN.md "The conversation core").

A person asks for a code on one channel (``issue``) and types it on the other (``claim``): 8
digits, valid 10 minutes, single use. Guessing is throttled per chat: 5 wrong codes in a
15-minute window and the chat is refused until the window ends, so one chat can try at most
480 codes a day against a space of 10^8. The code is stored only as its SHA-256, claimed in the
shared database (a second process, or a second person, cannot claim it too), and released when
the ledger could not attach the identity, so the person can try again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.chat.links import CODE_DIGITS, CODE_TTL, Claim, Issued, Outcome, digits  # noqa: F401
from bot.storage.chats import ChatKey, utcnow
from bot.storage.db import BotDatabase
from bot.storage.schema import Chat, LinkAttempt, LinkCode, NoticeChannel

WRONG_MAX = 5  # wrong codes a chat may type per window
WRONG_WINDOW = dt.timedelta(minutes=15)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class LinkStore:
    def __init__(self, db: BotDatabase) -> None:
        self.db = db

    async def issue(self, key: ChatKey, member_id: int, now: dt.datetime | None = None) -> Issued:
        """A fresh code for the chat ``key`` (whose member is ``member_id``); any code it asked
        for before and did not use stops working."""
        now = now or utcnow()
        expires = now + CODE_TTL
        async with self.db.session() as session:
            await session.execute(
                delete(LinkCode).where(
                    LinkCode.channel == key[0], LinkCode.address == key[1],
                    LinkCode.used_at.is_(None),
                )
            )
            # Expired codes are of no use to anyone: each issue sweeps them, so the table holds
            # about ten minutes of codes.
            await session.execute(
                delete(LinkCode).where(LinkCode.expires_at < now - dt.timedelta(days=1))
            )
            while True:
                code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
                hashed = code_hash(code)
                if await session.get(LinkCode, hashed) is None:
                    break
            session.add(
                LinkCode(
                    code_hash=hashed, channel=key[0], address=key[1], member_id=member_id,
                    created_at=now, expires_at=expires,
                )
            )
        return Issued(code, expires)

    async def claim(
        self, code: str, by: ChatKey, by_member: int | None, now: dt.datetime | None = None
    ) -> Claim:
        """Check ``code`` typed by the chat ``by`` (whose member is ``by_member``, if any) and
        claim it for that chat. A chat that claimed it before claims it again (a retry after the
        ledger failed to answer). Wrong, expired and used codes count against the throttle."""
        now = now or utcnow()
        hashed = code_hash(code)
        async with self.db.session() as session:
            attempt = await session.get(LinkAttempt, by, with_for_update=True)
            window_open = attempt is not None and now - attempt.window_start < WRONG_WINDOW
            if attempt is not None and window_open and attempt.failures >= WRONG_MAX:
                return Claim("throttled", retry_at=attempt.window_start + WRONG_WINDOW)
            row = await session.get(LinkCode, hashed, with_for_update=True)
            outcome = self._check(row, by, by_member, now)
            if outcome in ("wrong", "expired", "used"):
                await self._count_wrong(session, by, window_open, now)
                return Claim(outcome)
            assert row is not None
            found = Claim(outcome, hashed, row.member_id, (row.channel, row.address))
            if outcome != "claimed":
                return found
            others = await session.scalar(
                select(Chat.address).where(
                    Chat.member_id == row.member_id, Chat.channel == by[0], Chat.address != by[1]
                )
            )
            if others is not None:
                return Claim("taken", hashed, row.member_id, found.issuer)
            # Conditional, so two chats typing one code at once cannot both claim it even
            # where the row lock above is no lock (SQLite).
            marked = await session.execute(
                update(LinkCode)
                .where(
                    LinkCode.code_hash == hashed,
                    or_(
                        LinkCode.used_at.is_(None),
                        and_(LinkCode.used_channel == by[0], LinkCode.used_address == by[1]),
                    ),
                )
                .values(used_at=now, used_channel=by[0], used_address=by[1])
            )
            if getattr(marked, "rowcount", 0) != 1:
                return Claim("used")
        return found

    @staticmethod
    def _check(row: LinkCode | None, by: ChatKey, by_member: int | None, now: dt.datetime
               ) -> Outcome:
        if row is None:
            return "wrong"
        if row.used_at is not None and (row.used_channel, row.used_address) != by:
            return "used"
        if row.used_at is None and row.expires_at <= now:
            return "expired"
        if (row.channel, row.address) == by:
            return "self"
        if row.channel == by[0]:
            return "same_channel"
        if by_member == row.member_id:
            return "already"
        return "claimed"

    async def _count_wrong(
        self, session: AsyncSession, by: ChatKey, window_open: bool, now: dt.datetime
    ) -> None:
        """One more wrong code for ``by`` in its window (a new window once the last ended)."""
        insert = sqlite.insert if self.db.is_sqlite else postgresql.insert
        values: dict[str, object] = (
            {"failures": LinkAttempt.failures + 1}
            if window_open
            else {"window_start": now, "failures": 1}
        )
        await session.execute(
            insert(LinkAttempt)
            .values(channel=by[0], address=by[1], window_start=now, failures=1)
            .on_conflict_do_update(index_elements=["channel", "address"], set_=values)
        )

    async def release(self, hashed: str, by: ChatKey) -> None:
        """Give back a claim whose ledger call failed, so the code can be typed again."""
        async with self.db.session() as session:
            await session.execute(
                update(LinkCode)
                .where(
                    LinkCode.code_hash == hashed,
                    LinkCode.used_channel == by[0],
                    LinkCode.used_address == by[1],
                )
                .values(used_at=None, used_channel=None, used_address=None)
            )

    async def notice_channel(self, member_id: int) -> str | None:
        async with self.db.session() as session:
            row = await session.get(NoticeChannel, member_id)
        return row.channel if row is not None else None

    async def set_notice_channel(self, member_id: int, channel: str) -> None:
        """Notices for ``member_id`` go to their chat on ``channel`` from now on."""
        insert = sqlite.insert if self.db.is_sqlite else postgresql.insert
        now = utcnow()
        async with self.db.session() as session:
            await session.execute(
                insert(NoticeChannel)
                .values(member_id=member_id, channel=channel, updated_at=now)
                .on_conflict_do_update(
                    index_elements=["member_id"], set_={"channel": channel, "updated_at": now}
                )
            )
