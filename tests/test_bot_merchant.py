"""Merchant staff at the till, end to end: python-telegram-bot over HTTP to a fake Bot API, a real
ledger and bot database (SQLite and PostgreSQL).

The customer's QR is read back from the photo the bot really sent, with zxing-cpp, and the
cashier's phone opens what it decodes — the path a phone camera takes.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import zxingcpp
from PIL import Image, ImageDraw

from bot.chat.amounts import AmountError, AmountProblem, parse_bill
from bot.chat.i18n import translator
from bot.media import qr, scan
from ledger.context import utcnow
from ledger_client.errors import Unavailable
from ledger_client.models import Receipt
from tests.bot_harness import Harness, running_bot, tg
from tests.conftest import DATABASES, OVER_BOTH_TRANSPORTS
from tests.fake_telegram import Person, Sent
from tests.ledger_support import cli

SHOP_NAME = "锦城绿色生活超市"
CUSTOMER = "Zoe Lin"
MASKED = "Z**"

QR = zxingcpp.BarcodeFormat.QRCode  # the redemption picture also carries a Code 128


@dataclass
class Till:
    customer: Person
    member_id: int
    cashier: Person
    payload: str  # the deep-link payload of the customer's code
    preview: Sent


@pytest.fixture(params=DATABASES)
async def harness(
    request: pytest.FixtureRequest, tmp_path: Path, ledger_transport: str
) -> AsyncIterator[Harness]:
    async with running_bot(request.param, tmp_path, ledger=ledger_transport) as h:
        yield h


# --- helpers ----------------------------------------------------------------------------------








def button(sent: Sent, label: str) -> str:
    found = [data for text, data in sent.buttons if label in text]
    assert found, f"no {label!r} button in {sent.buttons}"
    return found[0]


async def customer(h: Harness, user_id: int = 2001, vouchers: bool = True) -> tuple[Person, int]:
    """A member who bought enough at the shop for the daily release to grant vouchers."""
    person = h.person(user_id, CUSTOMER, "en")
    await h.ask(person, "/start")
    profile = await h.services.chats.get(tg(user_id))
    assert profile is not None and profile.member_id is not None
    if vouchers:
        shop = h.ledger_as("merchant", h.shop_id)
        await shop.record_purchase(h.shop_id, profile.member_id, 5_000_000, uuid.uuid4().hex)
        await h.ledger_as("admin").release()
        balance = await h.ledger_as("admin").balance(profile.member_id)
        assert balance.vouchers_fen > 2_000  # more than the cap on the bills below
    return person, profile.member_id


async def staff_member(h: Harness, user_id: int = 3001, name: str = "Cashier") -> Person:
    person = h.person(user_id, name, "en")
    invite = await h.ledger_as("admin").create_staff_invite(h.shop_id)
    reply = await h.ask(person, f"/start {invite.code}")
    assert f"You are now staff of {SHOP_NAME}." in reply.text
    return person


async def shows_qr(h: Harness, person: Person) -> tuple[Sent, str, str]:
    """The /qr photo, the deep link decoded from its pixels, and the 20 digits in its caption."""
    photo = await h.ask(person, "/qr")
    assert photo.method == "sendPhoto"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(photo.files["photo"])), formats=QR)
    assert len(decoded) == 1
    link = decoded[0].text
    assert urlparse(link).netloc == "t.me"
    match = re.search(r"Code: ([\d ]+)", photo.text)
    assert match is not None
    return photo, link, match.group(1).strip()


def start_payload(link: str) -> str:
    return parse_qs(urlparse(link).query)["start"][0]


def photo_of_screen(png: bytes) -> bytes:
    """A phone's photo of a phone screen: off-centre, tilted, dim surroundings, JPEG noise."""
    code = Image.open(io.BytesIO(png)).convert("L")
    screen = Image.new("L", (code.width + 120, code.height + 260), 240)
    screen.paste(code, (60, 90))
    ImageDraw.Draw(screen).rectangle((20, 20, screen.width - 20, 60), fill=120)  # a status bar
    tilted = screen.rotate(8, expand=True, fillcolor=70, resample=Image.Resampling.BICUBIC)
    canvas = Image.new("L", (1280, 960), 70)
    canvas.paste(tilted, (420, 140))
    out = io.BytesIO()
    canvas.convert("RGB").save(out, format="JPEG", quality=70)
    return out.getvalue()


def lines_of(text: str) -> dict[str, str]:
    """``Label: value`` lines as a dict."""
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def menus(h: Harness) -> list[dict[str, Any]]:
    """Every setMyCommands call: {"scope": …, "commands": [names]}."""
    found = []
    for method, params in h.fake.calls:
        if method != "setMyCommands":
            continue
        commands = params["commands"]
        commands = json.loads(commands) if isinstance(commands, str) else commands
        scope = params.get("scope")
        scope = json.loads(scope) if isinstance(scope, str) else scope
        found.append({"scope": scope, "commands": [c["command"] for c in commands]})
    return found


def chat_menus(h: Harness, chat_id: int) -> list[list[str]]:
    return [
        m["commands"]
        for m in menus(h)
        if m["scope"] and m["scope"].get("type") == "chat" and m["scope"]["chat_id"] == chat_id
    ]


async def code_opened(h: Harness, vouchers: bool = True) -> tuple[Person, int, Person, str]:
    """A customer shows /qr and a cashier's phone opens it: (customer, member id, cashier,
    deep-link payload); the bot is now asking the cashier for the bill."""
    zoe, member_id = await customer(h, vouchers=vouchers)
    cashier = await staff_member(h)
    _photo, link, _digits = await shows_qr(h, zoe)
    payload = start_payload(link)
    opened = await h.ask(cashier, f"/start {payload}")
    assert "How much is the bill?" in opened.text
    return zoe, member_id, cashier, payload


async def at_the_till(h: Harness, bill: str = "88.50", vouchers: bool = True) -> Till:
    """The code opened and the bill typed: the cashier is looking at the preview."""
    zoe, member_id, cashier, payload = await code_opened(h, vouchers)
    preview = await h.ask(cashier, bill)
    assert "Please check with the customer:" in preview.text
    return Till(zoe, member_id, cashier, payload, preview)


async def redeem_through_chat(
    h: Harness, cashier: Person, opened: Sent, bill: str = "88.50"
) -> tuple[Sent, Sent]:
    """From the bill prompt the cashier got to the receipt: (preview, receipt)."""
    assert "How much is the bill?" in opened.text
    preview = await h.ask(cashier, bill)
    assert "Please check with the customer:" in preview.text
    receipt = await h.tap(cashier, button(preview, "Confirm"), preview)
    assert receipt.method == "editMessageText"
    assert receipt.message_id == preview.message_id
    return preview, receipt


# --- the whole path ---------------------------------------------------------------------------


@OVER_BOTH_TRANSPORTS
async def test_invite_link_scan_bill_preview_confirm_receipt_and_notice(harness: Harness) -> None:
    h = harness
    zoe, member_id = await customer(h)
    cashier = await staff_member(h)
    scoped = await h.fake.wait_for(lambda _: bool(chat_menus(h, cashier.id))) and chat_menus(
        h, cashier.id
    )
    assert "today" in scoped[-1] and "qr" in scoped[-1]  # staff still have the consumer menu

    today = await h.ask(cashier, "/today")
    assert lines_of(today.text)["Redemptions"] == "0"

    _photo, link, _digits = await shows_qr(h, zoe)
    before = await h.ledger_as("admin").balance(member_id)
    opened = await h.ask(cashier, f"/start {start_payload(link)}")
    assert MASKED in opened.text and SHOP_NAME in opened.text
    assert CUSTOMER not in opened.text

    expected = await h.ledger_as("merchant", h.shop_id).preview_redemption(
        start_payload(link), h.shop_id, 8850
    )
    assert expected.vouchers_applied_fen == 1770  # the shop's 20 % cap
    preview, receipt = await redeem_through_chat(h, cashier, opened)
    shown = lines_of(preview.text)
    assert shown["Customer"] == MASKED
    assert shown["Bill"] == "CN¥88.50"
    assert shown["Vouchers applied"] == "CN¥17.70"
    assert shown["Customer pays"] == "CN¥70.80"
    assert shown["Points the customer earns"] == f"{expected.points_to_earn:,}"

    assert f"Redeemed at {SHOP_NAME}" in receipt.text
    got = lines_of(receipt.text)
    assert (got["Customer"], got["Bill"], got["Vouchers applied"], got["Customer paid"]) == (
        MASKED, "CN¥88.50", "CN¥17.70", "CN¥70.80"
    )
    assert [label for label, _ in receipt.buttons] == ["↩ Undo"]  # issue 11: undo from here
    after = await h.ledger_as("admin").balance(member_id)
    assert after.vouchers_fen == before.vouchers_fen - 1770
    assert after.points == before.points + expected.points_to_earn

    today = await h.ask(cashier, "/today")
    summary = lines_of(today.text)
    assert (summary["Redemptions"], summary["Bills"], summary["Customers paid"]) == (
        "1", "CN¥88.50", "CN¥70.80"
    )
    assert summary["Vouchers applied"] == "CN¥17.70"

    mark = len(h.fake.sent)
    await h.settle()

    def noticed(sent: list[Sent]) -> bool:
        return any(s.chat_id == zoe.id and "CN¥17.70" in s.text for s in sent[mark:])

    await h.fake.wait_for(noticed, within=5)
    notice = next(s for s in h.fake.sent[mark:] if s.chat_id == zoe.id and "CN¥17.70" in s.text)
    assert SHOP_NAME in notice.text and "CN¥70.80" in notice.text


async def test_a_store_cashier_sees_their_stores_day_and_the_owner_the_merchants(
    harness: Harness,
) -> None:
    """Issue 11, stores: a cashier invited to a store books there; their /today is that store's
    day, named after it; the merchant-wide owner's is the whole merchant's."""
    h = harness
    owner = await staff_member(h, 3001, "Owner")  # the merchant's first invite: an owner
    admin = h.ledger_as("admin")
    west = await admin.add_store(h.shop_id, "西街店", 30.2300, 119.7100, "西街8号")
    invite = await admin.create_staff_invite(h.shop_id, "cashier", store_id=west.id)
    cashier = h.person(3002, "West", "en")
    joined = await h.ask(cashier, f"/start {invite.code}")
    assert f"You are now staff of {SHOP_NAME}." in joined.text
    for staff, customer_id in ((cashier, 2001), (owner, 2002)):
        zoe, _ = await customer(h, customer_id, vouchers=customer_id == 2001)  # one release a day
        _photo, link, _digits = await shows_qr(h, zoe)
        opened = await h.ask(staff, f"/start {start_payload(link)}")
        await redeem_through_chat(h, staff, opened)
    at_west = await h.ask(cashier, "/today")
    assert at_west.text.splitlines()[0].startswith(f"Today at {SHOP_NAME} (西街店) (")
    assert (lines_of(at_west.text)["Redemptions"], lines_of(at_west.text)["Bills"]) == (
        "1", "CN¥88.50"
    )
    whole = await h.ask(owner, "/today")
    assert whole.text.splitlines()[0].startswith(f"Today at {SHOP_NAME} (")
    assert "西街店" not in whole.text
    assert (lines_of(whole.text)["Redemptions"], lines_of(whole.text)["Bills"]) == (
        "2", "CN¥177.00"
    )


async def test_a_name_starting_with_a_bidi_override_is_masked_from_its_first_letter(
    harness: Harness,
) -> None:
    """Issue 9: a customer named U+202E… made the cashier's line render reversed and the mask
    show the override as the first letter."""
    h = harness
    rlo = h.person(2002, "\u202e\u2066Rae Lo", "en")
    await h.ask(rlo, "/start")
    cashier = await staff_member(h)
    _photo, link, _digits = await shows_qr(h, rlo)
    opened = await h.ask(cashier, f"/start {start_payload(link)}")
    assert opened.text.startswith(f"Code of customer R** at {SHOP_NAME}, valid until ")
    assert not any(0x202A <= ord(ch) <= 0x202E or 0x2066 <= ord(ch) <= 0x2069 for ch in opened.text)


@OVER_BOTH_TRANSPORTS
async def test_photo_of_the_qr_redeems(harness: Harness) -> None:
    h = harness
    zoe, _member_id = await customer(h)
    cashier = await staff_member(h)
    photo, _link, _digits = await shows_qr(h, zoe)
    before = len(h.fake.sent)
    cashier.sends_photo(photo_of_screen(photo.files["photo"]), file_id="till-photo")
    opened = await h.fake.next_to(cashier.id, before)
    assert MASKED in opened.text
    _preview, receipt = await redeem_through_chat(h, cashier, opened, "¥40")
    assert lines_of(receipt.text)["Vouchers applied"] == "CN¥8.00"


@OVER_BOTH_TRANSPORTS
async def test_typed_digits_redeem(harness: Harness) -> None:
    h = harness
    zoe, _member_id = await customer(h)
    cashier = await staff_member(h)
    _photo, _link, digits = await shows_qr(h, zoe)
    assert len(digits.replace(" ", "")) == 20 and " " in digits  # grouped as people read it
    opened = await h.ask(cashier, digits)
    _preview, receipt = await redeem_through_chat(h, cashier, opened, "25元")
    assert lines_of(receipt.text)["Bill"] == "CN¥25.00"


async def test_bill_amounts_are_checked_and_asked_again(harness: Harness) -> None:
    h = harness
    _zoe, _member_id, cashier, _payload = await code_opened(h, vouchers=False)
    for typed, reason in [
        ("lunch", "That is not an amount."),
        ("0", "The bill must be more than zero."),
        ("-5", "The bill must be more than zero."),
        ("88.505", "An amount has at most two decimals"),
        ("88,50", "Please write decimals with a dot"),
        ("123456789", "That is more than a single bill can be."),
    ]:
        reply = await h.ask(cashier, typed)
        assert reason in reply.text, typed
        assert "Type the bill in yuan" in reply.text
    preview = await h.ask(cashier, "８８．５")  # a Chinese keyboard's full-width digits
    assert lines_of(preview.text)["Bill"] == "CN¥88.50"
    assert lines_of(preview.text)["Vouchers applied"] == "CN¥0.00"  # no vouchers: still earns
    replaced = await h.ask(cashier, "90")  # a corrected amount replaces the preview
    assert lines_of(replaced.text)["Bill"] == "CN¥90.00"
    stale = await h.tap_answer(cashier, button(preview, "Confirm"), preview)
    assert stale.get("text") == "This button has expired."
    assert not [s for s in h.fake.to(cashier.id) if "Redeemed at" in s.text]
    receipt = await h.tap(cashier, button(replaced, "Confirm"), replaced)
    assert lines_of(receipt.text)["Bill"] == "CN¥90.00"


@OVER_BOTH_TRANSPORTS
async def test_cancel_redeems_nothing_and_the_code_still_works(harness: Harness) -> None:
    h = harness
    till = await at_the_till(h, "50")
    cashier, preview = till.cashier, till.preview
    cancelled = await h.tap(cashier, button(preview, "Cancel"), preview)
    assert cancelled.text == "Cancelled. Nothing was redeemed."
    after_cancel = await h.ask(cashier, "50")  # no conversation open: not a bill any more
    assert "Redeemed" not in after_cancel.text and "Please check" not in after_cancel.text
    assert (await h.ledger_as("merchant", h.shop_id).today(h.shop_id)).count == 0
    opened = await h.ask(cashier, f"/start {till.payload}")
    await redeem_through_chat(h, cashier, opened, "50")
    assert (await h.ledger_as("merchant", h.shop_id).today(h.shop_id)).count == 1


# --- once, and only once ----------------------------------------------------------------------


async def double_tap(h: Harness) -> None:
    till = await at_the_till(h)
    cashier, preview = till.cashier, till.preview
    before = await h.ledger_as("admin").balance(till.member_id)
    answered = len(cashier.answered_callbacks())
    confirm = button(preview, "Confirm")
    first = cashier.taps(confirm, preview)
    second = cashier.taps(confirm, preview)  # back to back: one batch, handled concurrently
    await h.handled(first)
    await h.handled(second)
    edits = [s for s in h.fake.to(cashier.id) if s.message_id == preview.message_id][1:]
    # One receipt: whichever taps edited the preview showed the very same receipt, never an
    # "already redeemed" for the cashier's own second tap.
    assert edits and len({e.text for e in edits}) == 1 and "Redeemed at" in edits[0].text
    toasts = [a.get("text") for a in cashier.answered_callbacks()[answered:]]
    assert len(toasts) == 2 and "Redeemed." in toasts
    after = await h.ledger_as("admin").balance(till.member_id)
    assert after.vouchers_fen == before.vouchers_fen - 1770
    today = await h.ledger_as("merchant", h.shop_id).today(h.shop_id)
    assert (today.count, today.vouchers_fen) == (1, 1770)


async def test_confirm_tapped_twice_at_once_applies_once(harness: Harness) -> None:
    await double_tap(harness)


@pytest.mark.parametrize("kind", DATABASES)
async def test_confirm_tapped_twice_over_an_http_ledger(kind: str, tmp_path: Path) -> None:
    async with running_bot(kind, tmp_path, ledger="http") as h:
        await double_tap(h)


@OVER_BOTH_TRANSPORTS
async def test_retry_after_a_lost_answer_gets_the_first_receipt(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger redeemed but its answer never arrived; the cashier taps Confirm again."""
    h = harness
    till = await at_the_till(h)
    before = await h.ledger_as("admin").balance(till.member_id)
    client = h.services.ledger
    redeem = client.redeem
    lost: list[Receipt] = []

    async def answer_lost(*args: Any, **kwargs: Any) -> Receipt:
        receipt = await redeem(*args, **kwargs)
        if not lost:
            lost.append(receipt)
            raise Unavailable("read timeout")
        return receipt

    monkeypatch.setattr(client, "redeem", answer_lost)
    confirm = button(till.preview, "Confirm")
    toast = await h.tap_answer(till.cashier, confirm, till.preview)
    assert "not answering" in str(toast.get("text"))
    receipt = await h.tap(till.cashier, confirm, till.preview)
    assert f"receipt no. {lost[0].redemption_id}" in receipt.text
    assert lines_of(receipt.text)["Vouchers applied"] == "CN¥17.70"
    after = await h.ledger_as("admin").balance(till.member_id)
    assert after.vouchers_fen == before.vouchers_fen - 1770


@pytest.mark.parametrize("kind", DATABASES)
async def test_a_ledger_that_answers_too_late_redeems_once(kind: str, tmp_path: Path) -> None:
    """Over real HTTP, the ledger books the redemption but its answer comes after the bot's
    client has given up (every attempt): the cashier is told, in their language, that the
    points service is not answering; tapping Confirm again sends the same idempotency key and
    gets the first redemption's receipt. One redemption, the vouchers taken once."""
    async with running_bot(kind, tmp_path, ledger="http", ledger_timeout=1.0) as h:
        zh = translator("zh_Hant")
        zoe, member_id = await customer(h)
        cashier = h.person(3003, "收銀員", "zh-TW")
        invite = await h.ledger_as("admin").create_staff_invite(h.shop_id)
        joined = await h.ask(cashier, f"/start {invite.code}")
        assert zh._("You are now staff of {merchant}.").format(merchant=SHOP_NAME) in joined.text
        _photo, link, _digits = await shows_qr(h, zoe)
        await h.ask(cashier, f"/start {start_payload(link)}")
        preview = await h.ask(cashier, "88.50")
        confirm = button(preview, zh._("✅ Confirm"))
        before = await h.ledger_as("admin").balance(member_id)

        h.hold_answers("POST", "/v1/redemptions")
        toast = await h.tap_answer(cashier, confirm, preview)
        assert toast["text"] == zh._(
            "The points service is not answering right now. Please try again in a moment."
        )
        held = h.ledger_requests("POST", "/v1/redemptions")
        assert held and all(r.status == 201 for r in held)  # the ledger did the work
        today = await h.ledger_as("merchant", h.shop_id).today(h.shop_id)
        assert (today.count, today.vouchers_fen) == (1, 1770)

        h.release_answers()
        receipt = await h.tap(cashier, confirm, preview)
        assert receipt.message_id == preview.message_id
        assert zh._("✅ Redeemed at {merchant}").format(merchant=SHOP_NAME) in receipt.text
        sent = h.ledger_requests("POST", "/v1/redemptions")
        assert len(sent) > len(held)
        keys = {r.body["idempotency_key"] for r in sent}
        assert len(keys) == 1, keys  # every attempt, the client's and the cashier's, one key
        today = await h.ledger_as("merchant", h.shop_id).today(h.shop_id)
        assert (today.count, today.vouchers_fen) == (1, 1770)
        after = await h.ledger_as("admin").balance(member_id)
        assert after.vouchers_fen == before.vouchers_fen - 1770


@OVER_BOTH_TRANSPORTS
async def test_second_phone_finds_the_code_used(harness: Harness) -> None:
    h = harness
    till = await at_the_till(h)
    second = await staff_member(h, 3002, "Second")
    # Both phones scan before either confirms: both see a preview, only one redeems.
    await h.ask(second, f"/start {till.payload}")
    preview_2 = await h.ask(second, "88.50")
    await h.tap(till.cashier, button(till.preview, "Confirm"), till.preview)
    refused = await h.tap(second, button(preview_2, "Confirm"), preview_2)
    assert "already redeemed" in refused.text
    # And a phone scanning after the redemption is told so straight away.
    late = await h.ask(second, f"/start {till.payload}")
    assert "already redeemed" in late.text
    assert MASKED not in late.text
    today = await h.ledger_as("merchant", h.shop_id).today(h.shop_id)
    assert (today.count, today.vouchers_fen) == (1, 1770)


# --- codes that cannot be used ----------------------------------------------------------------


@OVER_BOTH_TRANSPORTS
async def test_expired_used_revoked_and_unknown_codes_each_say_so(harness: Harness) -> None:
    h = harness
    zoe, _member_id = await customer(h, vouchers=False)
    cashier = await staff_member(h)
    replies: dict[str, str] = {}

    _photo, link, _digits = await shows_qr(h, zoe)
    opened = await h.ask(cashier, f"/start {start_payload(link)}")
    await redeem_through_chat(h, cashier, opened, "10")
    replies["used"] = (await h.ask(cashier, f"/start {start_payload(link)}")).text

    photo, old, _digits = await shows_qr(h, zoe)
    await h.tap(zoe, button(photo, "New code"), photo)
    replies["revoked"] = (await h.ask(cashier, f"/start {start_payload(old)}")).text

    unknown = "r" + "A" * 12
    replies["unknown"] = (await h.ask(cashier, f"/start {unknown}")).text

    _photo, fresh, _digits = await shows_qr(h, zoe)
    h.ledger.ctx.clock = lambda: utcnow() + dt.timedelta(minutes=10)
    replies["expired"] = (await h.ask(cashier, f"/start {start_payload(fresh)}")).text

    assert "already redeemed" in replies["used"]
    assert "replaced by a newer one" in replies["revoked"]
    assert "not a valid redemption code" in replies["unknown"]
    assert "has expired" in replies["expired"]
    assert len(set(replies.values())) == 4
    for text in replies.values():
        assert "How much is the bill?" not in text


async def test_code_expiring_while_the_bill_is_typed(harness: Harness) -> None:
    h = harness
    _zoe, _member_id, cashier, _payload = await code_opened(h, vouchers=False)
    h.ledger.ctx.clock = lambda: utcnow() + dt.timedelta(minutes=6)
    reply = await h.ask(cashier, "30")
    assert "has expired" in reply.text
    assert await h.services.flows.get(tg(cashier.id)) is None


# --- people who are not staff -----------------------------------------------------------------


@OVER_BOTH_TRANSPORTS
async def test_non_staff_opening_a_code_learns_nothing(harness: Harness) -> None:
    h = harness
    zoe, member_id = await customer(h)
    stranger = h.person(4001, "Stranger", "en")
    await h.ask(stranger, "/start")
    _photo, link, digits = await shows_qr(h, zoe)
    valid = await h.ask(stranger, f"/start {start_payload(link)}")
    unknown = await h.ask(stranger, "/start r" + "B" * 12)
    typed = await h.ask(stranger, digits)
    assert valid.text == unknown.text == typed.text
    for text in (valid.text, unknown.text):
        assert CUSTOMER not in text and MASKED not in text and "Z" not in text
        assert "¥" not in text and not re.search(r"\d", text)
    assert valid.buttons == []
    assert await h.services.flows.get(tg(stranger.id)) is None

    before = len(h.fake.sent)
    stranger.sends_photo(qr.png(link), file_id="stranger-photo")
    photo_reply = await h.fake.next_to(stranger.id, before)
    assert "Only alliance staff can scan codes" in photo_reply.text

    # The stranger's attempts neither used the code nor counted against anyone.
    cashier = await staff_member(h)
    opened = await h.ask(cashier, f"/start {start_payload(link)}")
    await redeem_through_chat(h, cashier, opened, "10")
    del member_id


async def test_staff_commands_refused_and_hidden_for_consumers(harness: Harness) -> None:
    h = harness
    zoe, _member_id = await customer(h, vouchers=False)
    refused = await h.ask(zoe, "/today")
    assert "/today is for the staff of alliance merchants" in refused.text
    assert "Redemptions" not in refused.text
    defaults = [m for m in menus(h) if not m["scope"] or m["scope"].get("type") == "default"]
    assert defaults and all("today" not in m["commands"] for m in defaults)
    assert all("today" not in commands for commands in chat_menus(h, zoe.id))
    cashier = await staff_member(h)
    await h.fake.wait_for(lambda _: bool(chat_menus(h, cashier.id)))
    assert "today" in chat_menus(h, cashier.id)[-1]


@OVER_BOTH_TRANSPORTS
async def test_staff_link_is_checked_on_every_update(harness: Harness) -> None:
    """A link changed in the ledger stops the next tap, whatever the chat still shows."""
    h = harness
    till = await at_the_till(h, "20", vouchers=False)
    # The cashier is moved to another shop: this shop's preview must not redeem.
    others = await h.ledger_as("admin").nearby(30.2341, 119.7239, 5000)
    other_id = next(m.id for m in others.merchants if m.id != h.shop_id)
    invite = await h.ledger_as("admin").create_staff_invite(other_id)
    moved = await h.ask(till.cashier, f"/start {invite.code}")
    assert "You are now staff of" in moved.text and SHOP_NAME not in moved.text
    refused = await h.tap(till.cashier, button(till.preview, "Confirm"), till.preview)
    assert "no longer staff of this merchant" in refused.text
    assert (await h.ledger_as("merchant", h.shop_id).today(h.shop_id)).count == 0


# --- invites and photos -----------------------------------------------------------------------


@OVER_BOTH_TRANSPORTS
async def test_used_expired_and_unknown_invites(harness: Harness) -> None:
    h = harness
    admin = h.ledger_as("admin")
    invite = await admin.create_staff_invite(h.shop_id)
    first, second = h.person(3001, "First", "en"), h.person(3002, "Second", "en")
    assert SHOP_NAME in (await h.ask(first, f"/start {invite.code}")).text
    used = await h.ask(second, f"/start {invite.code}")
    assert "already used" in used.text and "Ask your manager for a new one." in used.text
    again = await h.ask(first, f"/start {invite.code}")  # the person it linked taps it again
    assert "already used" in again.text and f"You are staff of {SHOP_NAME}." in again.text
    unknown = await h.ask(second, "/start s" + "x" * 22)
    assert "not valid" in unknown.text
    late = await admin.create_staff_invite(h.shop_id)
    h.ledger.ctx.clock = lambda: utcnow() + dt.timedelta(hours=73)
    expired = await h.ask(second, f"/start {late.code}")
    assert "has expired" in expired.text
    assert len({used.text, unknown.text, expired.text}) == 3
    assert await h.ledger_as("admin").staff_lookup("telegram", str(second.id)) is None


async def test_invite_from_the_ledger_cli_is_a_deep_link_and_a_qr(
    harness: Harness, tmp_path: Path
) -> None:
    """``greenpoints ledger staff-invite --merchant ID --bot-username … --qr …``, scanned."""
    h = harness
    png = tmp_path / "invite.png"
    run = await cli(
        h.services.settings.ledger_url, "staff-invite", "--merchant", str(h.shop_id),
        "--bot-username", "@GreenPointsTestBot", "--qr", str(png),
    )
    assert run.code == 0, run.err
    link = zxingcpp.read_barcodes(Image.open(png), formats=QR)[0].text
    assert link in run.out.splitlines()
    assert urlparse(link).path == "/GreenPointsTestBot"
    cashier = h.person(3001, "Cashier", "en")
    joined = await h.ask(cashier, f"/start {start_payload(link)}")
    assert f"You are now staff of {SHOP_NAME}." in joined.text
    link_now = await h.ledger_as("admin").staff_lookup("telegram", str(cashier.id))
    assert link_now is not None and link_now.merchant_id == h.shop_id
    balance = await h.ask(cashier, "/balance")  # staff are consumers too
    assert "Points:" in balance.text


async def test_photos_without_a_usable_code_get_help(harness: Harness) -> None:
    h = harness
    cashier = await staff_member(h)
    blank = Image.new("RGB", (640, 480), (200, 220, 200))
    ImageDraw.Draw(blank).ellipse((100, 100, 300, 300), fill=(30, 120, 30))
    out = io.BytesIO()
    blank.save(out, format="JPEG")
    before = len(h.fake.sent)
    cashier.sends_photo(out.getvalue(), file_id="no-code")
    reply = await h.fake.next_to(cashier.id, before)
    assert "could not find a QR code" in reply.text
    before = len(h.fake.sent)
    cashier.sends_photo(qr.png("https://example.com/pay?id=42"), file_id="other-qr")
    reply = await h.fake.next_to(cashier.id, before)
    assert "not a Green Points redemption code" in reply.text


# --- what cashiers type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "fen"),
    [
        ("88", 8800), ("88.5", 8850), ("¥88.50", 8850), ("￥ 88.50", 8850), ("88元", 8800),
        ("88 块", 8800), ("RMB 12", 1200), ("1,288.50", 128850), ("８８．５", 8850),
        ("88.50。", 8850), (".5", 50), ("0.01", 1), ("1000000", 100_000_000),
    ],
)
def test_bill_amounts_people_type(typed: str, fen: int) -> None:
    assert parse_bill(typed) == fen


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("lunch", AmountProblem.NOT_AN_AMOUNT), ("1e5", AmountProblem.NOT_AN_AMOUNT),
        ("", AmountProblem.NOT_AN_AMOUNT), ("88块5", AmountProblem.NOT_AN_AMOUNT),
        ("0", AmountProblem.NOT_POSITIVE), ("-5", AmountProblem.NOT_POSITIVE),
        ("¥-3", AmountProblem.NOT_POSITIVE), ("0.001", AmountProblem.TOO_PRECISE),
        ("88.505", AmountProblem.TOO_PRECISE), ("88,50", AmountProblem.AMBIGUOUS),
        ("1,28", AmountProblem.AMBIGUOUS), ("1000000.01", AmountProblem.TOO_LARGE),
        ("9" * 40, AmountProblem.TOO_LARGE),
    ],
)
def test_bill_amounts_refused_with_a_reason(typed: str, problem: AmountProblem) -> None:
    with pytest.raises(AmountError) as refused:
        parse_bill(typed)
    assert refused.value.problem is problem


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("https://t.me/AnyBot?start=rAbC-_0123456", "rAbC-_0123456"),
        ("tg://resolve?domain=AnyBot&start=rAbC-_0123456", "rAbC-_0123456"),
        ("rAbC-_0123456", "rAbC-_0123456"),
        ("1234 5678 9012 3456 7890", "12345678901234567890"),
        ("1234-5678-9012-3456-7890", "12345678901234567890"),
        ("１２３４５６７８９０１２３４５６７８９０", "12345678901234567890"),
        ("1234567890123456789", None), ("https://example.com/?start=rAbC-_0123456", None),
        ("sAbC-_0123456789012345678", None), ("hello", None), ("88.50", None),
    ],
)
def test_codes_found_in_text(text: str, code: str | None) -> None:
    assert scan.redemption_code(text) == code


def test_qr_decoding_reads_our_codes_and_nothing_else() -> None:
    link = "https://t.me/AnyBot?start=rAbC-_0123456"
    assert scan.decode_qr(photo_of_screen(qr.png(link))) == [link]
    assert scan.decode_qr(b"not a picture") == []
    blank = io.BytesIO()
    Image.new("L", (300, 300), 255).save(blank, format="PNG")
    assert scan.decode_qr(blank.getvalue()) == []


# --- the console demo -------------------------------------------------------------------------


async def test_console_demo_walks_through_the_till(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``printf '/qr\\n:staff\\n:scan\\n50\\n:tap 1\\n' | greenpoints demo``, in this process."""
    from bot.channels.console import demo as console

    monkeypatch.setenv("GREENPOINTS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("GREENPOINTS_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    out = io.StringIO()
    script = io.StringIO("/qr\n:staff\n:scan\n50\n:tap 1\n/today\n")
    assert await console.run(tmp_path, script, out) == 0
    shown = out.getvalue()
    after_scan = shown.split("> :scan", 1)[1]
    assert "50.00" in after_scan.split("> 50", 1)[1]
    receipt = after_scan.split("> :tap 1", 1)[1].split("> /today", 1)[0]
    t = translator("zh_Hans")  # the demo person's language
    assert "(edited) " + t._("✅ Redeemed at {merchant}").format(merchant=SHOP_NAME) in receipt
    today = shown.split("> /today", 1)[1]
    assert t._("Redemptions: {count}").format(count=1) in today


async def test_console_demo_amounts_changed_between_preview_and_confirm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11's case: ``printf ':staff\\n/qr\\n:scan\\n88.50\\n:release\\n:tap 1\\n' |
    greenpoints demo`` previewed one voucher figure and booked another without a word. Now the
    first Confirm redeems nothing and shows the fresh figures; confirming those books them."""
    from bot.channels.console import demo as console

    monkeypatch.setenv("GREENPOINTS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("GREENPOINTS_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    out = io.StringIO()
    script = io.StringIO(":staff\n/qr\n:scan\n88.50\n:release\n:tap 1\n:tap 1\n/today\n")
    assert await console.run(tmp_path, script, out) == 0
    shown = out.getvalue()
    t = translator("zh_Hans")  # the demo person's language
    previewed = shown.split("> 88.50", 1)[1].split("> :release", 1)[0]
    first_tap = shown.split("> :tap 1", 2)[1]
    second_tap = shown.split("> :tap 1", 2)[2].split("> /today", 1)[0]
    redeemed = t._("✅ Redeemed at {merchant}").format(merchant=SHOP_NAME)
    assert redeemed not in first_tap
    assert t._("The amounts changed: check the new figures.") in first_tap

    def applied(text: str) -> str:
        label = t._("Vouchers applied: {amount}").format(amount="")
        return text.split(label, 1)[1].split("\n", 1)[0]

    assert applied(first_tap) != applied(previewed)  # the release added vouchers
    assert redeemed in second_tap and applied(second_tap) == applied(first_tap)
    today = shown.split("> /today", 1)[1]
    assert t._("Redemptions: {count}").format(count=1) in today


async def test_console_demo_survives_refused_actions_and_odd_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found when tried as a new user would: ``:buy -5`` (any amount the ledger refuses) ended
    the demo with a traceback, and so did bytes that are not UTF-8 on standard input."""
    from bot.channels.console import demo as console

    monkeypatch.setenv("GREENPOINTS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("GREENPOINTS_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    out = io.StringIO()
    raw = io.BytesIO(b"\xff\xfe\n:buy -5\n:buy 99999999999\n/balance\n")
    script = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
    assert await console.run(tmp_path, script, out) == 0
    shown = out.getvalue()
    assert shown.count("(could not do that:") == 2
    t = translator("zh_Hans")
    assert t._("💚 Your green consumption points") in shown.split("> /balance", 1)[1]


async def test_help_lists_the_staff_commands_to_staff_only(harness: Harness) -> None:
    """/help tells a cashier their /today, as their menu does, and a consumer nothing of it."""
    h = harness
    zoe, _member_id = await customer(h, vouchers=False)
    assert "/today" not in (await h.ask(zoe, "/help")).text
    cashier = await staff_member(h)
    lines = (await h.ask(cashier, "/help")).text.splitlines()
    staff_at = lines.index("For the shop's staff:")
    assert lines[staff_at + 1] == "/today — Today's redemptions at my shop"
    assert "/balance — your points, their value and your vouchers" in lines[:staff_at]
    assert "For alliance administrators:" not in lines
