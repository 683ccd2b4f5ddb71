"""A merchant's owner and cashiers in the chat (issue 11), end to end through the fake Bot API
with a real ledger and bot database (SQLite and PostgreSQL): the owner invites a cashier (a
link and its QR, decoded from the photo sent), lists staff, sees the statement (text, and the
CSV as a document that reconciles with the ledger's own statement), the cashier undoes their
redemption from the receipt's button and the customer is told, the owner revokes the cashier
(who is told, and whose next scan is refused with the reason); refused paths in all three
languages."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from ledger.statements import yuan
from tests.bot_harness import Harness, running_bot
from tests.conftest import DATABASES
from tests.fake_telegram import Person, Sent
from tests.test_bot_merchant import (
    SHOP_NAME,
    button,
    customer,
    redeem_through_chat,
    shows_qr,
    start_payload,
)


@pytest.fixture(params=DATABASES)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(request.param, tmp_path) as h:
        yield h


async def owner_of_shop(h: Harness, user_id: int = 5001) -> Person:
    owner = h.person(user_id, "Olga Owner", "en")
    made = await h.ledger_as("admin").create_staff_invite(h.shop_id, role="owner")
    joined = await h.ask(owner, f"/start {made.code}")
    assert f"You are now staff of {SHOP_NAME}." in joined.text
    return owner


async def invited_cashier(h: Harness, owner: Person, user_id: int = 5002) -> Person:
    """The owner's /invite, read off the QR picture's pixels by the new cashier's phone."""
    photo = await h.ask(owner, "/invite")
    assert photo.method == "sendPhoto" and f"Cashier invite for {SHOP_NAME}." in photo.text
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(photo.files["photo"])))
    assert len(decoded) == 1 and decoded[0].text in photo.text  # the QR is the link shown
    cashier = h.person(user_id, "Carl Cashier", "en")
    joined = await h.ask(cashier, f"/start {start_payload(decoded[0].text)}")
    assert f"You are now staff of {SHOP_NAME}." in joined.text
    return cashier


async def messages_after(h: Harness, person: Person, before: int) -> list[Sent]:
    await h.settle()
    return [s for s in h.fake.sent[before:] if s.chat_id == person.id]


async def test_invite_statement_undo_and_revoke(harness: Harness) -> None:
    h = harness
    owner = await owner_of_shop(h)
    cashier = await invited_cashier(h, owner)
    listed = await h.ask(owner, "/staff")
    assert "Olga Owner (telegram), owner" in listed.text
    assert "Carl Cashier (telegram), cashier" in listed.text
    assert [label for label, _ in listed.buttons] == ["Revoke Carl Cashier (telegram)"]

    # A redemption at the till; its cashier undoes it from the receipt; the customer is told.
    zoe, member_id = await customer(h)
    _photo, link, _digits = await shows_qr(h, zoe)
    opened = await h.ask(cashier, f"/start {start_payload(link)}")
    _preview, receipt = await redeem_through_chat(h, cashier, opened, "100")
    asked = await h.tap(cashier, button(receipt, "Undo"), receipt)
    assert "Undo receipt no." in asked.text
    before = len(h.fake.sent)
    undone = await h.tap(cashier, button(asked, "Yes, undo"), asked)
    assert "is undone." in undone.text
    assert "Vouchers back with the customer: CN¥20.00" in undone.text
    told = await messages_after(h, zoe, before)
    assert any(f"{SHOP_NAME} undid your payment of CN¥100.00." in s.text for s in told), told
    assert any("vouchers are back, with their original expiry" in s.text for s in told)

    # The owner's statement: this month's figures, and the CSV as a document.
    before = len(h.fake.sent)
    text = await h.ask(owner, "/statement")
    assert f"Statement of {SHOP_NAME}" in text.text
    assert "redemption undone" in text.text and "concessions you owe" in text.text
    sent = await messages_after(h, owner, before)
    document = next(s for s in sent if s.method == "sendDocument")
    data = document.files["document"]
    assert data.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    ledger = await h.ledger_as("admin").statement(h.shop_id)
    closing = next(r for r in rows if r[1] == "closing_due")
    assert closing[-1] == yuan(ledger.closing_due_fen)
    days = [r for r in rows if re.fullmatch(r"\d{4}-\d{2}-\d{2}", r[0])]
    assert len(days) == len(ledger.lines) > 0  # a row per day and kind, as the ledger's lines

    # The cashier cannot see statements; the owner revokes the cashier, who is told.
    refused = await h.ask(cashier, "/statement")
    assert f"Only an owner of {SHOP_NAME} can do this." in refused.text
    asked = await h.tap(owner, listed.buttons[0][1], listed)
    assert "Revoke Carl Cashier (telegram)?" in asked.text
    before = len(h.fake.sent)
    revoked = await h.tap(owner, button(asked, "Yes, revoke"), asked)
    assert "Revoked: Carl Cashier (telegram) can no longer redeem codes" in revoked.text
    told = await messages_after(h, cashier, before)
    assert any(f"Your staff access to {SHOP_NAME} was revoked" in s.text for s in told), told
    # ... and their next scan is refused with the reason, not the answer strangers get.
    _photo, link, _digits = await shows_qr(h, zoe)
    scanned = await h.ask(cashier, f"/start {start_payload(link)}")
    assert f"Your staff access to {SHOP_NAME} was revoked" in scanned.text
    again = await h.ask(owner, "/staff")
    assert "Carl Cashier" not in again.text and again.buttons == []
    assert (await h.ledger_as("admin").balance(member_id)).vouchers_fen > 2_000


@pytest.mark.parametrize(
    ("language", "owners_only", "usage"),
    [
        ("en", "This is for the owners of alliance merchants.", "for example /undo 123"),
        ("zh-hans", "此功能仅供联盟商家的店主使用。", "例如 /undo 123"),
        ("zh-hant", "此功能僅供聯盟商家的店主使用。", "例如 /undo 123"),
    ],
)
async def test_refusals_in_each_language(
    harness: Harness, language: str, owners_only: str, usage: str
) -> None:
    h = harness
    stranger = h.person(6001, "Someone", language)
    for command in ("/statement", "/invite", "/staff"):
        assert owners_only in (await h.ask(stranger, command)).text
    assert usage in (await h.ask(stranger, "/undo")).text
    assert "/statement 2026-11" in (await h.ask(stranger, "/statement soon")).text


async def test_undo_refused_for_another_cashiers_redemption(harness: Harness) -> None:
    h = harness
    owner = await owner_of_shop(h)
    first = await invited_cashier(h, owner, 5002)
    second = await invited_cashier(h, owner, 5003)
    zoe, _member_id = await customer(h)
    _photo, link, _digits = await shows_qr(h, zoe)
    opened = await h.ask(first, f"/start {start_payload(link)}")
    _preview, receipt = await redeem_through_chat(h, first, opened, "50")
    number = receipt.text.split("receipt no. ")[1].split()[0]
    asked = await h.ask(second, f"/undo {number}")
    refused = await h.tap(second, button(asked, "Yes, undo"), asked)
    assert "A cashier can undo only their own redemptions; ask an owner." in refused.text
    assert "Nothing was changed." in refused.text
    # The owner may; and a second undo answers with the first.
    asked = await h.ask(owner, f"/undo {number}")
    done = await h.tap(owner, button(asked, "Yes, undo"), asked)
    assert f"Receipt no. {number} is undone." in done.text
    asked = await h.ask(owner, f"/undo {number}")
    again = await h.tap(owner, button(asked, "Yes, undo"), asked)
    assert again.text == f"Receipt no. {number} was already undone; nothing was changed now."
