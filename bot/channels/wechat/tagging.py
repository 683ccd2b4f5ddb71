"""Each follower carries the one user tag of their role x language, so WeChat shows them the
right conditional menu (WECHAT.md rule 8: menus match user tags only, and with several tags the
last one wins; issue 10: "tags assigned as people's roles and language change").

The tags and their menus are made by ``greenpoints wechat setup-menus`` (``menus.py``), whose tag
ids are kept in the bot database as ``wechat-tag:<name>`` positions. When a feature asks for the
person's menu to be redrawn (``Turn.refresh_menu``: a staff invite taken, a staff link found
ended, a language chosen, a /start), ``Tagger.retag`` untags the tag they carry
(``wechat_user_tags``) and tags the new one through ``tags/members/batchuntagging`` and
``batchtagging``; nothing is called when the tag is already right. Untag first: for a moment the
person has no tag and sees the default menu, never two tags whose order decides.
"""

from __future__ import annotations

import logging

import aiohttp
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from bot.channels.wechat.api import WeChatApi, WeChatApiError
from bot.channels.wechat.menus import Role, tag_name
from bot.chat.middleware import OnMenu
from bot.chat.turn import MenuChange
from bot.services import Services
from bot.storage.chats import Profile, utcnow
from bot.storage.db import BotDatabase
from bot.storage.schema import Cursor, WeChatUserTag

log = logging.getLogger(__name__)

TAG_PREFIX = "wechat-tag:"  # a tag's id is kept as the cursor named TAG_PREFIX + tag name


async def known_tags(db: BotDatabase) -> dict[str, int]:
    """Tag name -> tag id, as ``setup-menus`` stored them ({} before it ran)."""
    async with db.session() as session:
        rows = await session.execute(
            Cursor.__table__.select().where(Cursor.name.startswith(TAG_PREFIX))
        )
        return {str(r.name)[len(TAG_PREFIX) :]: int(r.value) for r in rows}


def role_of(*, staff: bool, admin: bool) -> Role:
    """Admin over cashier over consumer: an admin who also works a till sees the admin menu."""
    if admin:
        return "admin"
    return "cashier" if staff else "consumer"


class Tagger:
    def __init__(self, api: WeChatApi, db: BotDatabase) -> None:
        self.api = api
        self.db = db
        self._tags: dict[str, int] | None = None

    async def tags(self) -> dict[str, int]:
        """The stored tag ids, read once; read again while none are stored yet (setup-menus
        may run after the bot started)."""
        if not self._tags:
            self._tags = await known_tags(self.db)
        return self._tags

    async def retag(self, openid: str, role: Role, locale: str) -> bool:
        """Give ``openid`` the tag of ``role`` in ``locale`` and no other of ours; True when
        the platform was asked to change anything. Before ``setup-menus`` there are no tags
        and nothing is done. A platform refusal is logged (the person keeps the menu they had;
        the next redraw tries again) and never raised: a reply must not fail over a menu."""
        tag_id = (await self.tags()).get(tag_name(role, locale))
        if tag_id is None:
            log.info("wechat: no tag %s yet (run greenpoints wechat setup-menus)",
                     tag_name(role, locale))
            return False
        async with self.db.session() as session:
            current = await session.get(WeChatUserTag, openid)
            old = current.tag_id if current is not None else None
        if old == tag_id:
            return False
        try:
            if old is not None:
                await self.api.untag_people(old, [openid])
                await self._store(openid, None)
            await self.api.tag_people(tag_id, [openid])
        except (WeChatApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("wechat: could not retag a follower: %s", exc)
            return False
        await self._store(openid, tag_id)
        return True

    async def _store(self, openid: str, tag_id: int | None) -> None:
        """Remember the tag ``openid`` carries now (None: none of ours)."""
        async with self.db.session() as session:
            if tag_id is None:
                await session.execute(delete(WeChatUserTag).where(WeChatUserTag.openid == openid))
                return
            insert = sqlite.insert if self.db.is_sqlite else postgresql.insert
            now = utcnow()
            await session.execute(
                insert(WeChatUserTag)
                .values(openid=openid, tag_id=tag_id, tagged_at=now)
                .on_conflict_do_update(
                    index_elements=["openid"], set_={"tag_id": tag_id, "tagged_at": now}
                )
            )


def menu_retagger(tagger: Tagger, services: Services) -> OnMenu:
    """``features_runner``'s ``on_menu``: the role from the feature's word on staff and the
    admin list, the language from the person's profile."""

    async def on_menu(profile: Profile, change: MenuChange) -> None:
        role = role_of(staff=change.staff, admin=services.is_admin(profile.key))
        await tagger.retag(profile.address, role, profile.locale)

    return on_menu
