"""``greenpoints wechat …``: operating the WeChat account from the command line.

``setup-menus`` creates the role x language tags (once; their ids are kept in the bot database
as ``wechat-tag:<name>`` positions, so re-running reuses them) and one conditional menu per tag.
Settings: ``GREENPOINTS_WECHAT_*`` and ``GREENPOINTS_DATABASE_URL``; a missing or bad one stops
with one line.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import aiohttp

from bot.channels.wechat.api import WeChatApi, WeChatApiError
from bot.channels.wechat.menus import setup_menus
from bot.channels.wechat.settings import WeChatSettings, load_wechat_settings
from bot.channels.wechat.tagging import TAG_PREFIX, known_tags
from bot.config import SettingsError, load_settings
from bot.storage import cursors
from bot.storage.db import BotDatabase

USAGE = """usage: greenpoints wechat COMMAND

commands:
  setup-menus   create the tags and the tag-matched menus (consumer, cashier, admin x language)
"""

async def run_setup_menus(settings: WeChatSettings, database_url: str) -> dict[str, int]:
    """Returns tag name -> tag id."""
    db = BotDatabase(database_url)
    try:
        await db.upgrade()
        known = await known_tags(db)
        async with aiohttp.ClientSession() as http:
            api = WeChatApi(
                http,
                db,
                app_id=settings.app_id,
                app_secret=settings.app_secret.get_secret_value(),
                base_url=settings.api_url,
            )
            tags = await setup_menus(api, known)
        async with db.session() as session:
            for name, tag_id in tags.items():
                await cursors.start(session, TAG_PREFIX + name, tag_id)
        return tags
    finally:
        await db.dispose()


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if argv else 2
    if argv[0] != "setup-menus":
        print(f"unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        settings = load_wechat_settings()
        database_url = load_settings().database_url
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        tags = asyncio.run(run_setup_menus(settings, database_url))
    except (WeChatApiError, aiohttp.ClientError) as exc:
        print(f"WeChat refused or could not be reached: {exc}", file=sys.stderr)
        return 1
    print(f"{len(tags)} menus set up, one per tag: {', '.join(sorted(tags))}")
    return 0
