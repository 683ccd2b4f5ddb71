"""Everything a handler may use, built once per application."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.chat.announcements import Announcer
from bot.chat.pictures import Pictures
from bot.chat.replies import Notice
from bot.config import Settings
from bot.media.pictures import MediaPictures
from bot.outbox.broadcasts import Broadcasts
from bot.outbox.notices import NOTICE_METHOD, as_payload
from bot.storage.chats import ChatStore
from bot.storage.db import BotDatabase
from bot.storage.flows import FlowStore
from bot.storage.links import LinkStore
from bot.storage.outbox import Outgoing, enqueue
from ledger_client import LedgerClient, connect


@dataclass
class Services:
    settings: Settings
    ledger: LedgerClient
    db: BotDatabase
    chats: ChatStore = field(init=False)
    flows: FlowStore = field(init=False)
    links: LinkStore = field(init=False)
    broadcasts: Broadcasts = field(init=False)
    bot_username: str = "GreenPointsBot"
    channel: str = "telegram"  # the ledger identity channel for people reached through this bot
    # Set once announcements can run (``bot.outbox.broadcast_runner``); None where they cannot.
    announcer: Announcer | None = None
    # QR codes, charts and maps drawn, codes read from photos (``bot.chat.pictures``).
    pictures: Pictures = field(default_factory=MediaPictures)

    def __post_init__(self) -> None:
        self.chats = ChatStore(self.db)
        self.flows = FlowStore(self.db)
        self.links = LinkStore(self.db)
        self.broadcasts = Broadcasts(self.db)

    def is_admin(self, chat: tuple[str, str]) -> bool:
        """Whether the (channel, address) chat is an admin's: on WeChat an openid listed in
        GREENPOINTS_WECHAT_ADMIN_OPENIDS; elsewhere GREENPOINTS_ADMIN_IDS names Telegram user
        ids (their private chats' ids; the console's people are numbered the same way)."""
        channel, address = chat
        if channel == "wechat":
            return address in self.settings.wechat_admin_openids
        return address.isdigit() and int(address) in self.settings.admin_ids

    async def notify(self, chat: tuple[str, str], notice: Notice, dedupe_key: str) -> None:
        """Queue ``notice`` for the (channel, address) chat through the outbox, stored neutral
        and rendered by the person's channel when sent; once per ``dedupe_key`` (<= 100
        characters, cut to fit)."""
        message = Outgoing(
            chat[0],
            chat[1],
            NOTICE_METHOD,
            as_payload(notice),
            kind="notice",
            dedupe_key=dedupe_key[:100],
        )
        async with self.db.session() as session:
            await enqueue(session, [message])

    def deep_link(self, payload: str) -> str:
        """What a code or link carries for ``payload``: Telegram's ``t.me`` start link; on
        WeChat the bare payload, since no link opens an account's chat with a parameter and the
        code is read by the cashier's menu scanner, whose result comes back as the text itself
        (WECHAT.md; issue 10)."""
        if self.channel == "wechat":
            return payload
        return f"https://t.me/{self.bot_username}?start={payload}"


async def open_services(settings: Settings, channel: str = "telegram") -> Services:
    """The ledger client and the bot database (migrated) for a bot process of ``channel``."""
    api_key = settings.ledger_api_key.get_secret_value() if settings.ledger_api_key else None
    ledger = await connect(settings.ledger_url, api_key, role="bot")
    db = BotDatabase(settings.database_url)
    await db.upgrade()
    return Services(settings, ledger, db, channel=channel)


async def close_services(services: Services) -> None:
    await services.ledger.close()
    await services.db.dispose()
