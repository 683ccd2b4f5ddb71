"""/nearby: alliance merchants within a 15-minute walk (一刻钟便民生活圈) of a shared location."""

from __future__ import annotations

import math

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot import callbacks, formatting
from bot.context import App, GPContext
from bot.i18n import N_, Translator
from ledger_client.errors import NotFound
from ledger_client.models import Nearby

LIST = "nr"
MAP = "nm"
PAGE = 10
RADII = (1500, 3000, 5000)
CATEGORIES = {
    "grocery": N_("Grocery"),
    "cafe": N_("Café"),
    "restaurant": N_("Restaurant"),
    "bakery": N_("Bakery"),
    "pharmacy": N_("Pharmacy"),
    "bookstore": N_("Books"),
    "clothing": N_("Clothing"),
    "electronics": N_("Electronics"),
    "fruit": N_("Fruit"),
    "tea": N_("Tea"),
    "laundry": N_("Laundry"),
    "hairdresser": N_("Hairdresser"),
    "florist": N_("Florist"),
    "hardware": N_("Hardware"),
}


def category_name(t: Translator, code: str) -> str:
    return t._(CATEGORIES[code]) if code in CATEGORIES else code


def valid_coordinates(lat: float, lon: float) -> bool:
    return math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180


async def ask_location(update: Update, context: GPContext) -> None:
    assert update.effective_message is not None
    t = context.t
    button = KeyboardButton(t._("📍 Send my location"), request_location=True)
    await update.effective_message.reply_text(
        t._(
            "Share your location and I will list alliance merchants within a 15-minute walk. "
            "You can also send a location at any time."
        ),
        reply_markup=ReplyKeyboardMarkup([[button]], resize_keyboard=True, one_time_keyboard=True),
    )


def listing_text(t: Translator, found: Nearby, category: str | None, offset: int) -> str:
    radius = formatting.distance(t, found.radius_m)
    if not found.merchants:
        if category:
            return t._("No {category} within {radius}.").format(
                category=category_name(t, category), radius=radius
            )
        return t._("No alliance merchants within {radius} yet.").format(radius=radius)
    lines = [t._("Alliance merchants within {radius}, nearest first:").format(radius=radius)]
    for n, m in enumerate(found.merchants, start=offset + 1):
        lines.append(
            t._("{n}. {name} · {category} · {distance} · {minutes} min walk").format(
                n=n,
                name=m.name,
                category=category_name(t, m.category),
                distance=formatting.distance(t, m.distance_m),
                minutes=formatting.walking_minutes(m.distance_m),
            )
        )
        details = " · ".join(part for part in (m.address, m.hours) if part)
        if details:
            lines.append(f"   {details}")
    lines.append(
        t._("Showing {first}–{last} of {total}.").format(
            first=offset + 1, last=offset + len(found.merchants), total=found.total
        )
    )
    return "\n".join(lines)


def listing_keyboard(
    t: Translator, found: Nearby, category: str | None, offset: int
) -> InlineKeyboardMarkup | None:
    cat = category or "*"
    rows: list[list[InlineKeyboardButton]] = []
    maps = [
        InlineKeyboardButton(f"📍{n}", callback_data=callbacks.pack(MAP, m.id))
        for n, m in enumerate(found.merchants, start=offset + 1)
    ]
    rows += [maps[i : i + 5] for i in range(0, len(maps), 5)]
    top = sorted(found.categories.items(), key=lambda kv: (-kv[1], kv[0]))[:4]
    filters_row = [
        InlineKeyboardButton(
            ("✓ " if code == category else "") + category_name(t, code),
            callback_data=callbacks.pack(LIST, code, found.radius_m, 0),
        )
        for code, _count in top
        if len(found.categories) > 1 or category
    ]
    if category:
        filters_row.insert(
            0,
            InlineKeyboardButton(
                t._("All"), callback_data=callbacks.pack(LIST, "*", found.radius_m, 0)
            ),
        )
    if filters_row:
        rows.append(filters_row)
    paging = []
    if offset > 0:
        paging.append(
            InlineKeyboardButton(
                t._("◀ Nearer"),
                callback_data=callbacks.pack(LIST, cat, found.radius_m, max(0, offset - PAGE)),
            )
        )
    if offset + PAGE < found.total:
        paging.append(
            InlineKeyboardButton(
                t._("Farther ▶"),
                callback_data=callbacks.pack(LIST, cat, found.radius_m, offset + PAGE),
            )
        )
    if paging:
        rows.append(paging)
    if found.total == 0:
        rows.append(
            [
                InlineKeyboardButton(
                    t._("Widen to {radius}").format(radius=formatting.distance(t, radius)),
                    callback_data=callbacks.pack(LIST, cat, radius, 0),
                )
                for radius in RADII
                if radius > found.radius_m
            ]
        )
    rows = [row for row in rows if row]  # Telegram refuses empty rows
    return InlineKeyboardMarkup(rows) if rows else None


async def _search(
    context: GPContext, lat: float, lon: float, radius: int, category: str | None, offset: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    found = await context.services.ledger.nearby(lat, lon, radius, category, PAGE, offset)
    t = context.t
    return listing_text(t, found, category, offset), listing_keyboard(t, found, category, offset)


async def on_location(update: Update, context: GPContext) -> None:
    message = update.effective_message
    assert message is not None and message.location is not None
    t = context.t
    lat, lon = message.location.latitude, message.location.longitude
    if not valid_coordinates(lat, lon):
        await message.reply_text(t._("That location is not on this planet. Please send it again."))
        return
    text, keyboard = await _search(context, lat, lon, RADII[0], None, 0)
    # Remembered only once the ledger answered, so the buttons below have a place to work from.
    await context.services.chats.set_location(context.need_profile().chat_id, lat, lon)
    await message.reply_text(text, reply_markup=keyboard)


async def on_list_button(update: Update, context: GPContext) -> None:
    query = update.callback_query
    assert query is not None
    t = context.t
    parts = callbacks.unpack(query.data, LIST, 3)
    radius = callbacks.as_int(parts[1], 1, RADII[-1]) if parts else None
    offset = callbacks.as_int(parts[2], 0, 1000) if parts else None
    category = parts[0] if parts else None
    if (
        parts is None
        or radius is None
        or offset is None
        or (category != "*" and category not in CATEGORIES)
    ):
        await query.answer(t._("This button has expired."))
        return
    location = context.need_profile().last_location
    if location is None:
        await query.answer(t._("Please send your location again."), show_alert=True)
        return
    text, keyboard = await _search(
        context, location[0], location[1], radius, None if category == "*" else category, offset
    )
    await query.answer()
    await callbacks.edit_text(query, text, keyboard)


async def on_map_button(update: Update, context: GPContext) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None
    parts = callbacks.unpack(query.data, MAP, 1)
    merchant_id = callbacks.as_int(parts[0], 1, 2**62) if parts else None
    if merchant_id is None:
        await query.answer(context.t._("This button has expired."))
        return
    try:
        merchant = await context.services.ledger.get_merchant(merchant_id)
    except NotFound:
        await query.answer(context.t._("That merchant has left the alliance."), show_alert=True)
        return
    await query.answer()
    await context.bot.send_venue(
        query.message.chat.id,
        merchant.lat,
        merchant.lon,
        merchant.name,
        merchant.address or category_name(context.t, merchant.category),
    )


def register(app: App) -> None:
    app.add_handler(CommandHandler("nearby", ask_location))
    app.add_handler(MessageHandler(filters.LOCATION, on_location))
    app.add_handler(CallbackQueryHandler(on_list_button, pattern=callbacks.pattern(LIST)))
    app.add_handler(CallbackQueryHandler(on_map_button, pattern=callbacks.pattern(MAP)))
