"""The consumer conversations, end to end: python-telegram-bot over HTTP to a fake Bot API.

Every test runs on SQLite and on PostgreSQL (ledger and bot database alike). Expected texts
come from the catalogs through the same ``translator`` the bot uses, and the Chinese ones are
also checked to differ from the English msgid, so a missing translation fails here too.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import func, select

from bot.chat import formatting
from bot.chat.i18n import translator
from handlers.start import help_text
from ledger.principal import SYSTEM
from ledger.schema import RedemptionCode as CodeRow
from ledger_client.errors import CodeRevoked
from ledger_client.http import HttpLedgerClient
from tests.bot_harness import SHOP, Harness, running_bot, tg
from tests.conftest import DATABASES, OVER_BOTH_TRANSPORTS
from tests.fake_telegram import Person

EN = translator("en")
EXPIRED = "This button has expired."
BUSY = "The points service is not answering right now. Please try again in a moment."

QR = zxingcpp.BarcodeFormat.QRCode  # the redemption picture also carries a Code 128


@pytest.fixture(params=DATABASES)
async def harness(
    request: pytest.FixtureRequest, tmp_path: Path, ledger_transport: str
) -> AsyncIterator[Harness]:
    async with running_bot(request.param, tmp_path, ledger=ledger_transport) as h:
        yield h


@pytest.fixture(params=DATABASES)
async def http_harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The bot reaching the ledger over HTTP, through a server the test may stop."""
    async with running_bot(request.param, tmp_path, ledger="http") as h:
        yield h


# --- helpers ----------------------------------------------------------------------------------








async def member_of(harness: Harness, person: Person) -> int:
    profile = await harness.services.chats.get(tg(person.id))
    assert profile is not None and profile.member_id is not None
    return profile.member_id


async def started(harness: Harness, person: Person) -> int:
    await harness.ask(person, "/start")
    return await member_of(harness, person)


async def earn(harness: Harness, member_id: int, amounts: list[int], tag: str = "p") -> None:
    shop = harness.ledger_as("merchant", harness.shop_id)
    for n, amount in enumerate(amounts):
        await shop.record_purchase(
            harness.shop_id, member_id, amount, f"purchase-{tag}{member_id}-{n}"
        )


def decode(png: bytes) -> str:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=QR)
    assert len(found) == 1
    return str(found[0].text)


def start_payload(link: str, username: str = "GreenPointsTestBot") -> str:
    parsed = urlparse(link)
    assert (parsed.scheme, parsed.netloc, parsed.path) == ("https", "t.me", f"/{username}")
    return parse_qs(parsed.query)["start"][0]


def translated(locale: str, msgid: str) -> str:
    text = translator(locale)._(msgid)
    if locale != "en":
        assert text != msgid, f"{msgid!r} is not translated into {locale}"
    return text


# --- /start and /help -------------------------------------------------------------------------


@OVER_BOTH_TRANSPORTS
async def test_start_greets_and_creates_member(harness: Harness) -> None:
    alice = harness.person(1001, "Alice", "en")
    before = len(harness.fake.sent)
    alice.says("/start")
    reply = await harness.fake.next_to(1001, before)
    assert "Welcome to Green Points, Alice!" in reply.text
    assert "/balance" in reply.text
    profile = await harness.services.chats.get(tg(1001))
    assert profile is not None and profile.member_id is not None and profile.locale == "en"


@pytest.mark.parametrize(
    ("language_code", "locale", "word"),
    [
        ("zh-hans", "zh_Hans", "积分"),
        ("zh", "zh_Hans", "积分"),
        ("zh-TW", "zh_Hant", "積分"),
        ("zh-HK", "zh_Hant", "積分"),
        ("en-GB", "en", "points"),
        (None, "zh_Hans", "积分"),
        ("fr", "zh_Hans", "积分"),
    ],
)
async def test_start_speaks_the_persons_language(
    harness: Harness, language_code: str | None, locale: str, word: str
) -> None:
    person = harness.person(1010, "小绿", language_code)
    reply = await harness.ask(person, "/start")
    greeting = translated(locale, "Welcome to Green Points, {name}!").format(name="小绿")
    assert reply.text.startswith(greeting)
    assert help_text(translator(locale)) in reply.text
    assert word in reply.text
    profile = await harness.services.chats.get(tg(1010))
    assert profile is not None and profile.locale == locale
    member = await harness.ledger_as("admin").get_member(await member_of(harness, person))
    assert member.locale == locale
    if locale == "zh_Hant":
        # Telegram keys menus by two-letter code ("zh" is Simplified), so this chat gets its own.
        scope = {"type": "chat", "chat_id": 1010}
        await harness.fake.wait_for(lambda _sent: commands_call(harness, scope=scope) is not None)
        menu = commands_call(harness, scope=scope)
        assert menu is not None
        assert menu[0]["description"] == translated("zh_Hant", "My points and vouchers")


async def test_start_again_welcomes_back_the_same_member(harness: Harness) -> None:
    dan = harness.person(1011, "Dan", "en")
    first = await harness.ask(dan, "/start")
    member_id = await member_of(harness, dan)
    members = (await harness.ledger.stats(SYSTEM)).members
    again = await harness.ask(dan, "/start")
    assert first.text.startswith("Welcome to Green Points, Dan!")
    assert again.text.startswith("Welcome back, Dan!")
    assert await member_of(harness, dan) == member_id
    assert (await harness.ledger.stats(SYSTEM)).members == members


@pytest.mark.parametrize("payload", ["hello", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "a-b_c"])
async def test_start_with_an_unknown_payload_is_friendly(harness: Harness, payload: str) -> None:
    erin = harness.person(1012, "Erin", "en")
    reply = await harness.ask(erin, f"/start {payload}")
    assert reply.text.startswith("That link is not one I know, so here is the start instead.")
    assert "Welcome to Green Points, Erin!" in reply.text
    await member_of(harness, erin)


async def test_help_lists_the_commands(harness: Harness) -> None:
    fay = harness.person(1013, "Fay", "zh-TW")
    reply = await harness.ask(fay, "/help")
    assert reply.text == help_text(translator("zh_Hant"))
    for command in ("/balance", "/nearby", "/qr", "/language", "/settings"):
        assert command in reply.text
    assert "積分" in reply.text and "积分" not in reply.text


# --- /balance ---------------------------------------------------------------------------------


@OVER_BOTH_TRANSPORTS
async def test_balance_shows_points_value_vouchers_and_pages_history(harness: Harness) -> None:
    gus = harness.person(1020, "Gus", "en")
    member_id = await started(harness, gus)
    await earn(harness, member_id, [10_000 + 1_000 * n for n in range(7)])
    release = await harness.ledger_as("admin").release()
    assert release.members_granted >= 1
    expected = await harness.services.ledger.balance(member_id, limit=5)
    assert expected.vouchers_fen > 0 and expected.nearest_expiry is not None

    reply = await harness.ask(gus, "/balance")
    text = reply.text
    assert f"Points: {expected.points:,}" in text
    assert formatting.money(EN, expected.points_value_fen) in text
    assert "CN¥" in text and "not a promise" in text
    assert (
        f"Vouchers: {formatting.money(EN, expected.vouchers_fen)} — "
        f"{formatting.money(EN, expected.nearest_expiry_fen)} of them expire on "
        f"{formatting.day(EN, expected.nearest_expiry)}."
    ) in text
    recent = [line for line in text.splitlines() if line.startswith("• ")]
    assert len(recent) == 5
    assert "vouchers +" in recent[0]  # the release came last, so it is listed first
    assert "锦城绿色生活超市" in recent[1]

    assert expected.activity_next_before is not None
    more = ("More history", f"bal|{expected.activity_next_before}")
    assert reply.buttons == [more]
    page = await harness.tap(gus, more[1], reply)
    older = [line for line in page.text.splitlines() if line.startswith("• ")]
    assert len(older) == 3  # 7 purchases and 1 grant: 5 shown, 3 more
    assert all("锦城绿色生活超市" in line for line in older)
    assert not set(older) & set(recent)
    assert page.buttons == []
    assert gus.answered_callbacks()[-1].get("text") is None


async def test_balance_of_a_new_member_has_no_vouchers_yet(harness: Harness) -> None:
    hal = harness.person(1021, "Hal", "zh-hans")
    reply = await harness.ask(hal, "/balance")
    assert translated("zh_Hans", "Points: {points}").format(points="0") in reply.text
    assert reply.text.count("¥") >= 2 and "CN¥" not in reply.text
    assert reply.buttons == []
    await member_of(harness, hal)  # /balance alone made the member


# --- /nearby ----------------------------------------------------------------------------------


async def test_nearby_asks_for_the_location_with_a_button(harness: Harness) -> None:
    ivy = harness.person(1030, "Ivy", "en")
    reply = await harness.ask(ivy, "/nearby")
    keyboard = reply.markup["keyboard"]
    assert keyboard[0][0]["request_location"] is True
    assert keyboard[0][0]["text"] == "📍 Send my location"


@OVER_BOTH_TRANSPORTS
async def test_location_lists_nearest_first(harness: Harness) -> None:
    carol = harness.person(1003, "Carol", "en")
    before = len(harness.fake.sent)
    carol.shares_location(SHOP["lat"], SHOP["lon"])
    listing = await harness.fake.next_to(1003, before)
    lines = listing.text.splitlines()
    assert lines[0] == "Alliance merchants within 1.2 km, nearest first:"
    assert lines[1].startswith("1. 锦城绿色生活超市 · Grocery · 0 m")
    assert lines[3] == "2. 测试cafe0 · Café · 222 m · 3 min walk"
    assert "测试tea" not in listing.text  # 3.3 km away
    store = (await harness.ledger.list_stores(SYSTEM, harness.shop_id)).stores[0]
    assert ("📍1", f"nm|{harness.shop_id}|{store.id}") in listing.buttons


@OVER_BOTH_TRANSPORTS
async def test_nearby_category_filter_and_map(harness: Harness) -> None:
    jo = harness.person(1031, "Jo", "en")
    before = len(harness.fake.sent)
    jo.shares_location(SHOP["lat"], SHOP["lon"])
    listing = await harness.fake.next_to(1031, before)
    assert ("Café", "nr|cafe|1200|0") in listing.buttons

    cafes = await harness.tap(jo, "nr|cafe|1200|0", listing)
    assert cafes.method == "editMessageText"
    assert "1. 测试cafe0 · Café" in cafes.text
    assert "锦城绿色生活超市" not in cafes.text and "测试bakery" not in cafes.text
    assert ("All", "nr|*|1200|0") in cafes.buttons
    assert ("✓ Café", "nr|cafe|1200|0") in cafes.buttons

    venue = await harness.tap(jo, f"nm|{harness.shop_id}", listing)  # a button from before stores
    assert venue.method == "sendVenue"
    assert float(venue.params["latitude"]) == pytest.approx(SHOP["lat"])
    assert float(venue.params["longitude"]) == pytest.approx(SHOP["lon"])
    assert venue.params["title"] == "锦城绿色生活超市"
    assert venue.params["address"] == "钱王街88号"


async def test_nearby_lists_a_chains_stores_and_maps_each(harness: Harness) -> None:
    """Issue 11, stores: a branch is listed with its merchant's name and its own, and its map
    button shows the branch's place, not the merchant's."""
    from ledger.models import StoreIn

    branch = await harness.ledger.add_store(
        SYSTEM, harness.shop_id,
        StoreIn(name="西街店", address="西街8号", lat=SHOP["lat"] + 0.001, lon=SHOP["lon"],
                hours="07:00-22:00"),
    )
    lu = harness.person(1033, "Lu", "en")
    before = len(harness.fake.sent)
    lu.shares_location(SHOP["lat"] + 0.001, SHOP["lon"])
    listing = await harness.fake.next_to(1033, before)
    lines = listing.text.splitlines()
    assert lines[1].startswith("1. 锦城绿色生活超市 (西街店) · Grocery · 0 m")
    assert lines[2] == "   西街8号 · 07:00-22:00"
    button = f"nm|{harness.shop_id}|{branch.id}"
    assert ("📍1", button) in listing.buttons
    venue = await harness.tap(lu, button, listing)
    assert venue.method == "sendVenue"
    assert float(venue.params["latitude"]) == pytest.approx(SHOP["lat"] + 0.001)
    assert (venue.params["title"], venue.params["address"]) == ("锦城绿色生活超市 (西街店)",
                                                                "西街8号")
    zh = harness.person(1034, "陆", "zh-hans")
    before = len(harness.fake.sent)
    zh.shares_location(SHOP["lat"] + 0.001, SHOP["lon"])
    listing = await harness.fake.next_to(1034, before)
    assert listing.text.splitlines()[1].startswith("1. 锦城绿色生活超市（西街店）")


async def test_nearby_pages_through_more_than_ten(harness: Harness) -> None:
    from ledger.models import MerchantIn

    for n in range(12):
        await harness.ledger.create_merchant(
            SYSTEM,
            MerchantIn(name=f"附近店{n:02d}", category="fruit",
                       lat=SHOP["lat"] + 0.0001 * (n + 1), lon=SHOP["lon"]),
        )
    kim = harness.person(1032, "Kim", "en")
    before = len(harness.fake.sent)
    kim.shares_location(SHOP["lat"], SHOP["lon"])
    first = await harness.fake.next_to(1032, before)
    numbered = [line for line in first.text.splitlines() if re.match(r"\d+\. ", line)]
    assert len(numbered) == 10 and numbered[-1].startswith("10. ")
    assert "Showing 1–10 of 15." in first.text
    assert ("Farther ▶", "nr|*|1200|10") in first.buttons

    second = await harness.tap(kim, "nr|*|1200|10", first)
    numbered = [line for line in second.text.splitlines() if re.match(r"\d+\. ", line)]
    assert [line.split(".")[0] for line in numbered] == ["11", "12", "13", "14", "15"]
    assert "Showing 11–15 of 15." in second.text
    assert ("◀ Nearer", "nr|*|1200|0") in second.buttons
    assert not any(label == "Farther ▶" for label, _ in second.buttons)
    distances = [int(m) for m in re.findall(r" · (\d+) m · ", first.text + second.text)]
    assert distances == sorted(distances)


async def test_nearby_lists_only_a_15_minute_walk_first(harness: Harness) -> None:
    """The first list is the 15-minute walk it promises: a merchant 15 minutes away is in it,
    one 18 minutes away is not (it was, under a 1.5 km radius), and comes with "Widen"."""
    from ledger.models import MerchantIn

    for name, metres in (("十五分钟店", 1_190), ("十八分钟店", 1_400)):
        await harness.ledger.create_merchant(
            SYSTEM,
            MerchantIn(name=name, category="laundry",
                       lat=SHOP["lat"] + metres / 111_195, lon=SHOP["lon"]),
        )
    mo = harness.person(1034, "Mo", "en")
    before = len(harness.fake.sent)
    mo.shares_location(SHOP["lat"], SHOP["lon"])
    first = await harness.fake.next_to(1034, before)
    laundries = await harness.tap(mo, "nr|laundry|1200|0", first)
    assert "十五分钟店 · Laundry · 1.2 km · 15 min walk" in laundries.text
    assert "十八分钟店" not in laundries.text
    minutes = [int(m) for m in re.findall(r" (\d+) min walk", first.text + laundries.text)]
    assert minutes and max(minutes) <= 15
    wider = await harness.tap(mo, "nr|laundry|3000|0", laundries)
    assert "十八分钟店 · Laundry · 1.4 km · 18 min walk" in wider.text


async def test_nearby_offers_a_wider_radius_when_nothing_is_near(harness: Harness) -> None:
    lu = harness.person(1033, "Lu", "en")
    before = len(harness.fake.sent)
    lu.shares_location(SHOP["lat"] - 0.02, SHOP["lon"])  # 2.2 km south of the shop
    empty = await harness.fake.next_to(1033, before)
    assert empty.text == "No alliance merchants within 1.2 km yet."
    assert empty.buttons == [("Widen to 3 km", "nr|*|3000|0"), ("Widen to 5 km", "nr|*|5000|0")]
    wider = await harness.tap(lu, "nr|*|3000|0", empty)
    assert wider.text.splitlines()[0] == "Alliance merchants within 3 km, nearest first:"
    assert "1. 锦城绿色生活超市 · Grocery · 2.2 km · 28 min walk" in wider.text


async def test_nearby_with_longest_names_addresses_and_hours_fits_telegram(
    harness: Harness,
) -> None:
    """Issue 9: ten merchants whose fields are as long as the ledger accepts made a 6,224-char
    list that Telegram refused; the list now fits 4,096 characters and shows all ten."""
    from ledger.models import MerchantIn

    spot = {"lat": 30.5, "lon": 120.5}  # far from the seeded shops
    for n in range(10):
        await harness.ledger.create_merchant(
            SYSTEM,
            MerchantIn(
                name="\u202e" + f"长名{n}" + "名" * 196,
                category="fruit",
                address="址" * 300,
                hours="时" * 100,
                lat=spot["lat"] + 0.0001 * n,
                lon=spot["lon"],
            ),
        )
    mei = harness.person(1035, "Mei", "en")
    before = len(harness.fake.sent)
    mei.shares_location(spot["lat"], spot["lon"])
    listing = await harness.fake.next_to(1035, before)
    assert listing.method == "sendMessage"
    assert len(listing.text) <= 4096
    numbered = [line for line in listing.text.splitlines() if re.match(r"\d+\. ", line)]
    assert [line.split(".")[0] for line in numbered] == [str(n) for n in range(1, 11)]
    assert numbered[0].startswith("1. 长名0名")  # the override is gone, the name starts visibly
    assert "\u202e" not in listing.text
    assert "Showing 1–10 of 10." in listing.text
    assert len([label for label, _ in listing.buttons if label.startswith("📍")]) == 10


# --- /qr --------------------------------------------------------------------------------------


@OVER_BOTH_TRANSPORTS
async def test_qr_photo_decodes_to_a_link_the_ledger_accepts(harness: Harness) -> None:
    bob = harness.person(1002, "Bob", "en")
    bob.says("/start")
    await harness.fake.next_to(1002, 0)
    before = len(harness.fake.sent)
    bob.says("/qr")
    photo = await harness.fake.next_to(1002, before)
    assert photo.method == "sendPhoto"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(photo.files["photo"])), formats=QR)
    link = urlparse(decoded[0].text)
    assert link.netloc == "t.me" and link.path == "/GreenPointsTestBot"
    code = parse_qs(link.query)["start"][0]
    shop = harness.ledger_as("merchant", harness.shop_id)
    preview = await shop.preview_redemption(code, harness.shop_id, 10_000)
    assert preview.bill_fen == 10_000
    digits = "".join(ch for ch in photo.text.split("Code: ")[1].split("\n")[0] if ch.isdigit())
    assert (await shop.preview_redemption(digits, harness.shop_id, 10_000)) == preview


def caption_digits(caption: str) -> str:
    line = next(line for line in caption.splitlines() if line.startswith("Code: "))
    digits = line.removeprefix("Code: ").replace(" ", "")
    assert re.fullmatch(r"\d{20}", digits), line
    return digits


@OVER_BOTH_TRANSPORTS
async def test_qr_caption_and_a_fresh_code_revokes_the_old(harness: Harness) -> None:
    mo = harness.person(1040, "Mo", "en")
    member_id = await started(harness, mo)
    await earn(harness, member_id, [50_000])
    await harness.ledger_as("admin").release()
    vouchers = (await harness.services.ledger.balance(member_id)).vouchers_fen
    assert vouchers > 0
    shop = harness.ledger_as("merchant", harness.shop_id)

    photo = await harness.ask(mo, "/qr")
    old_link = start_payload(decode(photo.files["photo"]))
    preview = await shop.preview_redemption(old_link, harness.shop_id, 100_000)
    old_digits = caption_digits(photo.text)
    assert await shop.preview_redemption(old_digits, harness.shop_id, 100_000) == preview
    assert f"Valid until {formatting.clock(EN, preview.code_expires_at)} (5 min)" in photo.text
    assert f"up to {formatting.money(EN, vouchers)} of vouchers" in photo.text
    assert photo.buttons == [("🔄 New code", "qr|new")]

    edited = await harness.tap(mo, "qr|new", photo)
    assert edited.method == "editMessageMedia"
    media = edited.media
    assert media["type"] == "photo"
    attached = str(media["media"]).removeprefix("attach://")
    new_link = start_payload(decode(edited.files[attached]))
    assert new_link != old_link
    new_digits = caption_digits(str(media["caption"]))
    assert new_digits != old_digits
    assert json.loads(edited.params["reply_markup"])["inline_keyboard"][0][0]["callback_data"] \
        == "qr|new"
    assert mo.answered_callbacks()[-1]["text"] == \
        "Here is a new code; the old one no longer works."

    for old in (old_link, old_digits):
        with pytest.raises(CodeRevoked):
            await shop.preview_redemption(old, harness.shop_id, 100_000)
    assert (await shop.preview_redemption(new_digits, harness.shop_id, 100_000)).bill_fen \
        == 100_000


async def test_qr_without_vouchers_still_earns(harness: Harness) -> None:
    ned = harness.person(1041, "Ned", "zh-hans")
    photo = await harness.ask(ned, "/qr")
    assert photo.method == "sendPhoto"
    msgid = "You have no vouchers yet; the code still earns you points."
    assert translated("zh_Hans", msgid) in photo.text
    assert "核销" in photo.text or "码" in photo.text


# --- /language and /settings ------------------------------------------------------------------


def commands_call(harness: Harness, **match: Any) -> list[dict[str, Any]] | None:
    """The commands of the last setMyCommands call whose parameters include ``match``."""
    for method, params in reversed(harness.fake.calls):
        if method != "setMyCommands":
            continue
        decoded = {k: json.loads(v) if k in {"scope", "commands"} and isinstance(v, str) else v
                   for k, v in params.items()}
        if all(decoded.get(k) == v for k, v in match.items()):
            commands = decoded["commands"]
            assert isinstance(commands, list)
            return commands
    return None


async def test_command_menu_is_registered_in_every_language(harness: Harness) -> None:
    default = commands_call(harness, language_code=None)
    chinese = commands_call(harness, language_code="zh")
    english = commands_call(harness, language_code="en")
    assert default is not None and chinese is not None and english is not None
    names = [c["command"] for c in english]
    assert names[:7] == ["balance", "nearby", "qr", "pool", "language", "settings", "help"]
    assert english[0]["description"] == "My points and vouchers"
    assert chinese[0]["description"] == translated("zh_Hans", "My points and vouchers")
    assert default == chinese


@OVER_BOTH_TRANSPORTS
async def test_language_switch_changes_replies_and_the_chat_menu(harness: Harness) -> None:
    oz = harness.person(1050, "Oz", "zh-hans")
    member_id = await started(harness, oz)
    menu = await harness.ask(oz, "/language")
    assert menu.text == translated("zh_Hans", "Choose your language:")
    assert menu.buttons == [
        ("✓ 简体中文", "lang|zh_Hans"), ("繁體中文", "lang|zh_Hant"), ("English", "lang|en")
    ]
    switched = await harness.tap(oz, "lang|zh_Hant", menu)
    assert switched.method == "editMessageText"
    assert switched.text == translated("zh_Hant", "I will speak {language} from now on.").format(
        language="繁體中文"
    )
    await harness.fake.wait_for(
        lambda _sent: commands_call(harness, scope={"type": "chat", "chat_id": 1050}) is not None
    )
    chat_menu = commands_call(harness, scope={"type": "chat", "chat_id": 1050})
    assert chat_menu is not None
    assert chat_menu[0]["description"] == translated("zh_Hant", "My points and vouchers")

    helped = await harness.ask(oz, "/help")
    assert helped.text == help_text(translator("zh_Hant"))
    profile = await harness.services.chats.get(tg(1050))
    assert profile is not None and profile.locale == "zh_Hant" and profile.locale_chosen
    assert (await harness.ledger_as("admin").get_member(member_id)).locale == "zh_Hant"

    english = await harness.tap(oz, "lang|en", menu)
    assert english.text == "I will speak English from now on."
    balance = await harness.ask(oz, "/balance")
    assert balance.text.startswith("💚 Your green consumption points")


@OVER_BOTH_TRANSPORTS
async def test_settings_toggle_notices(harness: Harness) -> None:
    pia = harness.person(1060, "Pia", "en")
    shown = await harness.ask(pia, "/settings")
    assert shown.text.startswith("Notices are on.")
    link = [("Link my other app", "lnk"), ("I have a link code", "lne")]
    assert shown.buttons == [("Turn notices off", "ntc|0"), ("Daily", "dgs|daily"),
                             ("✓ Weekly", "dgs|weekly"), ("No digest", "dgs|off"), *link]
    off = await harness.tap(pia, "ntc|0", shown)
    assert off.text.startswith("Notices are off.")
    assert off.buttons == [("Turn notices on", "ntc|1"), *link]
    profile = await harness.services.chats.get(tg(1060))
    assert profile is not None and not profile.notices
    on = await harness.tap(pia, "ntc|1", off)
    assert on.text.startswith("Notices are on.")
    profile = await harness.services.chats.get(tg(1060))
    assert profile is not None and profile.notices


# --- anything else ----------------------------------------------------------------------------


async def test_anything_else_gets_a_short_helpful_reply(harness: Harness) -> None:
    quinn = harness.person(1070, "Quinn", "en")
    chat = "I'm a points bot, so I can't chat much."
    replies = {
        "text": await harness.ask(quinn, "hello there"),
        "command": await harness.ask(quinn, "/frobnicate"),
    }
    before = len(harness.fake.sent)
    quinn.sends_sticker()
    replies["sticker"] = await harness.fake.next_to(1070, before)
    before = len(harness.fake.sent)
    quinn.sends_photo(b"\x89PNG not really a picture", "photo-q")
    replies["photo"] = await harness.fake.next_to(1070, before)
    before = len(harness.fake.sent)
    quinn.sends(voice={"file_id": "v1", "file_unique_id": "v1", "duration": 2})
    replies["voice"] = await harness.fake.next_to(1070, before)
    before = len(harness.fake.sent)
    quinn.shares_location(1000.0, 20.0)
    replies["absurd location"] = await harness.fake.next_to(1070, before)

    assert replies["text"].text.startswith(chat)
    assert replies["sticker"].text.startswith(chat)
    assert replies["voice"].text.startswith(chat)
    assert replies["command"].text == "I don't know that command. /help shows what I can do."
    assert replies["photo"].text.startswith("Thanks for the picture!")
    assert replies["absurd location"].text.startswith("That location is not on this planet.")
    for kind, reply in replies.items():
        assert reply.method == "sendMessage", kind
        assert 0 < len(reply.text) <= 200, kind
        assert "/" in reply.text or kind == "absurd location", kind
    profile = await harness.services.chats.get(tg(1070))
    assert profile is not None and profile.last_location is None


@pytest.mark.parametrize(
    "data",
    ["bal|abc", "bal|0", "nr|*|99999999|0", "nr|nosuch|1500|0", "nr|*|1500|-5", "nm|abc",
     "nm|1|2|3", "lang|fr", "ntc|2", "qr|old", "zzz", "", "bal|" + "9" * 70],
)
async def test_forged_or_stale_buttons_are_answered_as_expired(
    harness: Harness, data: str
) -> None:
    rex = harness.person(1080, "Rex", "en")
    shown = await harness.ask(rex, "/settings")
    answer = await harness.tap_answer(rex, data, shown, silent=True)
    assert answer["text"] == EXPIRED
    profile = await harness.services.chats.get(tg(1080))
    assert profile is not None and profile.notices and profile.locale == "en"


async def test_list_button_without_a_location_asks_for_one(harness: Harness) -> None:
    sue = harness.person(1081, "Sue", "en")
    shown = await harness.ask(sue, "/help")
    answer = await harness.tap_answer(sue, "nr|cafe|1200|0", shown, silent=True)
    assert answer["text"] == "Please send your location again."


async def test_a_merchant_that_left_is_explained(harness: Harness) -> None:
    tom = harness.person(1082, "Tom", "en")
    shown = await harness.ask(tom, "/help")
    answer = await harness.tap_answer(tom, "nm|987654", shown, silent=True)
    assert answer["text"] == "That merchant has left the alliance."


async def test_groups_get_a_pointer_or_silence(harness: Harness) -> None:
    uma = harness.person(1090, "Uma", "en")
    group = -100777
    await harness.handled(uma.says_in_group("hello everyone", group))
    assert harness.fake.to(group) == []
    before = len(harness.fake.sent)
    uma.says_in_group("/balance", group)
    pointer = await harness.fake.next_to(group, before)
    assert pointer.text == "Let's talk in a private chat: tap my name and press Start."
    assert len(harness.fake.to(group)) == 1
    await harness.handled(uma.says_in_group("/balance@SomeOtherBot", group))  # not for us
    assert len(harness.fake.to(group)) == 1
    before = len(harness.fake.sent)
    uma.says_in_group(f"/balance@{harness.app.bot.username}", group)
    assert (await harness.fake.next_to(group, before)).text == pointer.text
    assert await harness.services.chats.get(tg(group)) is None
    assert (await harness.ledger.stats(SYSTEM)).members == 0


async def test_a_failing_profile_lookup_gets_one_reply_not_two(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The middleware reports its own failure once and stops: the handlers never run on
    without a profile to fail a second time."""
    wes = harness.person(1092, "Wes", "en")

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the bot's database refused the row")

    monkeypatch.setattr(harness.services.chats, "seen", broken)
    update_id = wes.says("/balance")
    await harness.handled(update_id)
    replies = harness.fake.to(1092)
    sorry = "Sorry, something went wrong on our side. Please try again."
    assert [r.text for r in replies] == [sorry]
    assert (await harness.ledger.stats(SYSTEM)).members == 0


async def test_edited_messages_are_ignored(harness: Harness) -> None:
    val = harness.person(1091, "Val", "en")
    await harness.ask(val, "/help")
    count = len(harness.fake.to(1091))
    await harness.handled(val.edits(1, "/balance"))
    assert len(harness.fake.to(1091)) == count


# --- the ledger down --------------------------------------------------------------------------


async def codes_of(harness: Harness, member_id: int) -> int:
    async with harness.ledger.ctx.db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(CodeRow).where(CodeRow.member_id == member_id)
        )
    return int(count or 0)


async def test_ledger_down_means_try_again_shortly_and_nothing_changes(
    http_harness: Harness,
) -> None:
    harness = http_harness
    wes = harness.person(1100, "Wes", "en")
    member_id = await started(harness, wes)  # over HTTP, while the ledger is up
    menu = await harness.ask(wes, "/language")
    members = (await harness.ledger.stats(SYSTEM)).members
    await harness.stop_ledger()

    for command in ("/balance", "/qr", "/start"):
        reply = await harness.ask(wes, command)
        assert reply.text == BUSY, command
    before = len(harness.fake.sent)
    wes.shares_location(SHOP["lat"], SHOP["lon"])
    assert (await harness.fake.next_to(1100, before)).text == BUSY
    assert await codes_of(harness, member_id) == 0

    answer = await harness.tap_answer(wes, "lang|zh_Hant", menu, silent=True)
    assert answer["text"] == BUSY and answer.get("show_alert") in (True, "true")
    profile = await harness.services.chats.get(tg(1100))
    assert profile is not None and profile.locale == "en" and not profile.locale_chosen
    assert profile.last_location is None
    assert (await harness.ledger_as("admin").get_member(member_id)).locale == "en"

    xia = harness.person(1101, "夏", "zh-TW")
    reply = await harness.ask(xia, "/start")
    assert reply.text == translated("zh_Hant", BUSY)
    newcomer = await harness.services.chats.get(tg(1101))
    assert newcomer is None or newcomer.member_id is None
    assert (await harness.ledger.stats(SYSTEM)).members == members

    helped = await harness.ask(wes, "/help")  # needs no ledger, so it still works
    assert helped.text == help_text(EN)


@pytest.mark.parametrize("kind", DATABASES)
async def test_a_ledger_that_answers_too_late_makes_one_member(kind: str, tmp_path: Path) -> None:
    """Over real HTTP, the ledger makes the newcomer's member but its answer comes after the
    bot's client gave up: the person is told, in their language, to try again; their second
    /start finds the same member (the identity is the key), not a second one. (They are
    welcomed *back*: the ledger made them on the first try, though they never saw it.)"""
    async with running_bot(kind, tmp_path, ledger="http", ledger_timeout=1.0) as h:
        lin = h.person(1103, "林", "zh-hans")
        members = (await h.ledger.stats(SYSTEM)).members
        h.hold_answers("POST", "/v1/members/resolve")
        reply = await h.ask(lin, "/start")
        assert reply.text == translated("zh_Hans", BUSY)
        made = h.ledger_requests("POST", "/v1/members/resolve")
        assert made and made[0].status in (200, 201), made
        assert (await h.ledger.stats(SYSTEM)).members == members + 1  # the ledger did the work
        newcomer = await h.services.chats.get(tg(1103))
        assert newcomer is None or newcomer.member_id is None

        h.release_answers()
        welcome = await h.ask(lin, "/start")
        greeting = translated("zh_Hans", "Welcome back, {name}!").format(name="林")
        assert welcome.text.startswith(greeting)
        assert (await h.ledger.stats(SYSTEM)).members == members + 1
        assert made[0].answer["created"] is True
        assert await member_of(h, lin) == made[0].answer["id"]
        sent = h.ledger_requests("POST", "/v1/members/resolve")
        assert len(sent) > len(made)
        assert {(r.body["channel"], r.body["external_id"]) for r in sent} == {("telegram", "1103")}


async def test_a_slow_ledger_is_reported_as_busy(harness: Harness) -> None:
    """A ledger that accepts the connection and never answers: the client's timeout ends it."""
    release = asyncio.Event()

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    slow = HttpLedgerClient(f"http://127.0.0.1:{port}", "key", total_timeout=0.3, backoff=0.01)
    inprocess = harness.services.ledger
    harness.services.ledger = slow
    try:
        yan = harness.person(1102, "Yan", "en")
        for command in ("/start", "/balance", "/qr"):
            assert (await harness.ask(yan, command)).text == BUSY, command
    finally:
        harness.services.ledger = inprocess
        release.set()
        server.close()
        await slow.close()
        await server.wait_closed()
    assert (await harness.ledger.stats(SYSTEM)).members == 0
    welcome = await harness.ask(yan, "/start")  # the ledger is back: all is well again
    assert welcome.text.startswith("Welcome to Green Points, Yan!")


async def test_the_redemption_picture_carries_the_digits_for_a_scanner_gun(
    harness: Harness,
) -> None:
    """Issue 11, "Till scanners": under the QR code, the 20 digits as a Code 128 that a till's
    scanner reads (and types, followed by Enter, as the till already accepts)."""
    person = harness.person(930, language_code="en")
    await started(harness, person)
    photo = await harness.ask(person, "/qr")
    picture = Image.open(io.BytesIO(photo.files["photo"]))
    bars = zxingcpp.read_barcodes(picture, formats=zxingcpp.BarcodeFormat.Code128)
    digits = re.search(r"Code: ([\d ]+)", photo.text)
    assert digits is not None and len(bars) == 1
    assert bars[0].text == digits.group(1).replace(" ", "")
    assert len(bars[0].text) == 20
    link = decode(photo.files["photo"])  # the QR code still reads alone
    assert start_payload(link).startswith("r")
