"""People the bot talks to: their member id, language, notice setting and blocked state.

Every update needs its chat's profile, so profiles are cached in memory for a short time; every
change goes to the database first and then replaces the cached copy.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, replace

from sqlalchemy import ColumnElement, and_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.chat import cleaning
from bot.storage.db import BotDatabase
from bot.storage.schema import Chat, NoticeChannel

CACHE_SECONDS = 30.0
SEEN_EVERY = dt.timedelta(minutes=10)  # how stale last_seen_at may get; saves a write per update
NAME_MAX = 64  # the column's width, and the ledger's limit on a member's display name


def clean_name(name: str | None) -> str | None:
    """A person's name fit to store and show others (``bot.chat.cleaning.clean_name``): no
    control or format characters (a NUL that PostgreSQL cannot store, a bidi override that turns
    a cashier's line around: issue 9), runs of spaces one, at most ``NAME_MAX`` characters;
    None when nothing visible is left."""
    return cleaning.clean_name(name, NAME_MAX)


def _is(key: ChatKey) -> ColumnElement[bool]:
    return and_(Chat.channel == key[0], Chat.address == key[1])


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


ChatKey = tuple[str, str]
"""Who a chat is with: (channel, address), the address being the channel's own id for the person
as a string ("telegram", "5004"), ("wechat", an openid). Issue 9."""


@dataclass(frozen=True)
class Profile:
    channel: str
    address: str
    member_id: int | None
    locale: str
    locale_chosen: bool
    display_name: str | None
    notices: bool
    blocked: bool
    last_location: tuple[float, float] | None
    last_seen_at: dt.datetime
    digest: str | None = None  # daily|weekly|off; None: the deployment's default (issue 12)
    timezone: str | None = None  # IANA name where known; None: the alliance's zone

    @property
    def key(self) -> ChatKey:
        """The chat's key in the bot's tables."""
        return self.channel, self.address

    @property
    def identity(self) -> tuple[str, str]:
        """Who this person is to the ledger: (channel, external id)."""
        return self.channel, self.address


def _profile(row: Chat) -> Profile:
    location = (
        (row.last_lat_e6 / 1e6, row.last_lon_e6 / 1e6)
        if row.last_lat_e6 is not None and row.last_lon_e6 is not None
        else None
    )
    return Profile(
        channel=row.channel,
        address=row.address,
        member_id=row.member_id,
        locale=row.locale,
        locale_chosen=row.locale_chosen,
        display_name=row.display_name,
        notices=row.notices,
        blocked=row.blocked_at is not None,
        last_location=location,
        last_seen_at=row.last_seen_at,
        digest=row.digest,
        timezone=row.timezone,
    )


class ChatStore:
    def __init__(self, db: BotDatabase) -> None:
        self.db = db
        self._cache: dict[ChatKey, tuple[float, Profile]] = {}

    def _remember(self, profile: Profile) -> Profile:
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[profile.key] = (time.monotonic() + CACHE_SECONDS, profile)
        return profile

    def forget(self, key: ChatKey) -> None:
        self._cache.pop(key, None)

    async def get(self, key: ChatKey) -> Profile | None:
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self.db.session() as session:
            row = await session.get(Chat, key)
        return self._remember(_profile(row)) if row is not None else None

    async def seen(self, key: ChatKey, locale: str, display_name: str | None) -> Profile:
        """The chat's profile, created on first contact; a person who writes is not blocked.

        ``locale`` is used for a new chat only; after that the person's choice stands.
        ``display_name`` is stored cleaned (``clean_name``).
        """
        display_name = clean_name(display_name)
        now = utcnow()
        known = await self.get(key)
        if known is not None and not known.blocked and now - known.last_seen_at < SEEN_EVERY:
            return known
        # Insert-or-nothing, then update: a new person's first two messages arrive together
        # often enough (a double tap on Start), and two plain INSERTs made one of them fail on
        # PostgreSQL with a duplicate key, answered "something went wrong".
        insert = sqlite.insert if self.db.is_sqlite else postgresql.insert
        async with self.db.session() as session:
            created = await session.scalar(
                insert(Chat)
                .values(
                    channel=key[0],
                    address=key[1],
                    locale=locale,
                    locale_chosen=False,
                    display_name=display_name,
                    notices=True,
                    created_at=now,
                    last_seen_at=now,
                )
                .on_conflict_do_nothing(index_elements=["channel", "address"])
                .returning(Chat.address)
            )
            if created is None:
                values: dict[str, object] = {"last_seen_at": now, "blocked_at": None}
                if display_name:
                    values["display_name"] = display_name
                await session.execute(update(Chat).where(_is(key)).values(**values))
            row = await session.get(Chat, key, populate_existing=True)
            assert row is not None
            profile = _profile(row)
        return self._remember(profile)

    async def _set(self, key: ChatKey, **values: object) -> Profile | None:
        async with self.db.session() as session:
            await session.execute(update(Chat).where(_is(key)).values(**values))
            row = await session.get(Chat, key, populate_existing=True)
            profile = _profile(row) if row is not None else None
        if profile is None:
            self.forget(key)
            return None
        return self._remember(profile)

    async def link_member(self, key: ChatKey, member_id: int) -> Profile | None:
        return await self._set(key, member_id=member_id)

    async def set_locale(self, key: ChatKey, locale: str) -> Profile | None:
        return await self._set(key, locale=locale, locale_chosen=True)

    async def set_notices(self, key: ChatKey, on: bool) -> Profile | None:
        return await self._set(key, notices=on)

    async def set_digest(self, key: ChatKey, period: str) -> Profile | None:
        """The person's voucher digest period (daily, weekly or off; issue 12)."""
        return await self._set(key, digest=period)

    async def set_timezone(self, key: ChatKey, zone: str | None) -> Profile | None:
        """The person's IANA zone, for quiet hours and digest days (None: the alliance's)."""
        return await self._set(key, timezone=zone)

    async def set_location(self, key: ChatKey, lat: float, lon: float) -> Profile | None:
        return await self._set(key, last_lat_e6=round(lat * 1e6), last_lon_e6=round(lon * 1e6))

    async def mark_blocked(self, keys: list[ChatKey]) -> None:
        """The person blocked the bot: stop sending until they write again."""
        if not keys:
            return
        async with self.db.session() as session:
            await session.execute(
                update(Chat)
                .where(tuple_(Chat.channel, Chat.address).in_(keys))
                .values(blocked_at=utcnow())
            )
        for key in keys:
            self.forget(key)

    async def by_member(self, member_ids: list[int]) -> dict[int, Profile]:
        """The chat each member's notices go to. A member linked on several channels (issue
        10) has one chat per channel: the one on the channel they chose (``NoticeChannel``),
        else their first chat; a chat that blocked the bot gives way to one that did not."""
        if not member_ids:
            return {}
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(Chat, NoticeChannel.channel)
                    .outerjoin(NoticeChannel, NoticeChannel.member_id == Chat.member_id)
                    .where(Chat.member_id.in_(member_ids))
                )
            ).all()
        ranked = sorted(
            rows,
            key=lambda r: (
                r[0].blocked_at is not None, r[1] != r[0].channel, r[0].created_at, r[0].channel
            ),
        )
        chosen: dict[int, Profile] = {}
        for row, _channel in ranked:
            if row.member_id is not None and row.member_id not in chosen:
                chosen[row.member_id] = _profile(row)
        return chosen

    async def linked(self, member_id: int) -> list[Profile]:
        """Every chat that leads to ``member_id`` (one per channel once linked), oldest first."""
        async with self.db.session() as session:
            rows = (
                await session.scalars(
                    select(Chat).where(Chat.member_id == member_id).order_by(Chat.created_at)
                )
            ).all()
        return [_profile(row) for row in rows]

    async def by_keys(
        self, keys: list[ChatKey], session: AsyncSession | None = None
    ) -> dict[ChatKey, Profile]:
        """Profiles of these chats, as the database has them now (no cache); in ``session``
        when given (SQLite has one connection: a second session would wait for it forever)."""
        if session is None:
            async with self.db.session() as own:
                return await self.by_keys(keys, own)
        found: dict[ChatKey, Profile] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            rows = await session.scalars(
                select(Chat).where(tuple_(Chat.channel, Chat.address).in_(part))
            )
            for row in rows.all():
                found[row.channel, row.address] = _profile(row)
        return found


def with_member(profile: Profile, member_id: int) -> Profile:
    return replace(profile, member_id=member_id)
