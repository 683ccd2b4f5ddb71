"""A purchase names its member by their code (issue 11), over real HTTP on SQLite and
PostgreSQL: a till key (or the bot for a cashier) naming a bare member id is refused and
nothing changes; with the member's code it is booked for that member and the code is spent
(a second purchase or a redemption with it is refused, a retry with the key answers the first,
typed or scanned); a guessed code is 404 and counted; the system still names members by id;
the console demo's ``:buy`` goes through the code."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ledger import verify
from ledger.models import RedeemInviteRequest
from ledger.principal import SYSTEM
from ledger.rules import Rules
from ledger.schema import RedemptionCode
from tests.conftest import Served, World
from tests.ledger_support import buy, diff, http, is_error, snapshot

RULES = Rules(points_hold_days=0, purchase_cap_count=0, purchase_needs_code=True)
CASHIER = {"channel": "telegram", "external_id": "code-cashier"}


@pytest.fixture
async def coded(served: Served, world: World) -> Served:
    served.service.ctx.rules = RULES
    invite = await served.service.create_staff_invite(SYSTEM, world.merchant_id, "cashier")
    await served.service.redeem_staff_invite(
        SYSTEM, RedeemInviteRequest(code=invite.code, **CASHIER)
    )
    return served


async def post(
    session: aiohttp.ClientSession, served: Served, role: str, path: str, body: dict[str, Any]
) -> Any:
    return await http(session, "POST", served.url + path, key=served.keys[role], json_body=body)


async def test_a_bare_member_id_is_refused_from_a_till(
    coded: Served, world: World, http_session: aiohttp.ClientSession
) -> None:
    s = coded.service
    before = await snapshot(s)
    for role, extra in (("merchant", {}), ("bot", {"staff": CASHIER})):
        for member in (*world.member_ids, 999_999):  # real ids and a guess alike
            answer = await post(http_session, coded, role, "/v1/purchases", {
                "merchant_id": world.merchant_id, "member_id": member, "amount_fen": 5000,
                "idempotency_key": f"bare-{role}-{member}", **extra,
            })
            assert is_error(answer, 403, "forbidden") is None, answer
            assert answer.body["error"]["details"]["reason"] == "member_code_required"
    assert diff(before, await snapshot(s)) == []
    neither = await post(http_session, coded, "merchant", "/v1/purchases", {
        "merchant_id": world.merchant_id, "amount_fen": 5000, "idempotency_key": "neither-1",
    })
    assert is_error(neither, 400, "invalid_request") is None, neither
    # The system (seeding, the CLI) still names members by id.
    await buy(s, world.merchant_id, world.member_ids[0], 5000, "system-by-id")


async def test_a_code_books_for_its_member_once(
    coded: Served, world: World, http_session: aiohttp.ClientSession
) -> None:
    s, shop, member = coded.service, world.merchant_id, world.member_ids[1]
    code = await s.issue_code(SYSTEM, member)
    body = {"merchant_id": shop, "code": code.numeric_code, "amount_fen": 12_345,
            "idempotency_key": "purchase-coded-1"}
    first = await post(http_session, coded, "merchant", "/v1/purchases", body)
    assert first.status == 201, first
    assert first.body["member_id"] == member and first.body["member_points"] > 0
    # The same purchase retried, the code scanned this time: the first answer.
    scanned = {**body, "code": code.link_code}
    again = await post(http_session, coded, "merchant", "/v1/purchases", scanned)
    assert (again.status, again.body) == (201, first.body)
    before = await snapshot(s)
    second = await post(http_session, coded, "bot", "/v1/purchases",
                        {**body, "idempotency_key": "purchase-coded-2", "staff": CASHIER})
    assert is_error(second, 409, "code_used") is None, second
    redeem = await post(http_session, coded, "merchant", "/v1/redemptions", {
        "merchant_id": shop, "code": code.numeric_code, "bill_fen": 1000,
        "vouchers_applied_fen": 0, "pay_fen": 1000, "idempotency_key": "purchase-coded-redeem",
    })
    assert is_error(redeem, 409, "code_used") is None, redeem
    guessed = await post(http_session, coded, "merchant", "/v1/purchases",
                         {**body, "code": "1" * 20, "idempotency_key": "purchase-coded-guess"})
    assert is_error(guessed, 404, "code_not_found") is None, guessed
    assert diff(before, await snapshot(s)) == []
    async with s.ctx.db.read() as session:
        state = await session.scalar(
            select(RedemptionCode.state).where(RedemptionCode.member_id == member)
        )
    assert state == "spent"
    # A cashier through the bot, with the member's next code.
    fresh = await s.issue_code(SYSTEM, member)
    by_bot = await post(http_session, coded, "bot", "/v1/purchases", {
        **body, "code": fresh.numeric_code, "idempotency_key": "purchase-coded-3", "staff": CASHIER,
    })
    assert by_bot.status == 201 and by_bot.body["member_id"] == member
    report = await verify.verify(s.ctx)
    assert report.ok, report.problems


async def test_the_demo_buys_with_the_persons_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.channels.console import demo as console

    monkeypatch.setenv("GREENPOINTS_RULE_PURCHASE_NEEDS_CODE", "true")
    monkeypatch.setenv("GREENPOINTS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("GREENPOINTS_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    out = io.StringIO()
    assert await console.run(tmp_path, io.StringIO(":buy 88.50\n"), out) == 0
    shown = out.getvalue()
    assert "could not do that" not in shown
    assert "¥88.50" in shown  # the points notice names the purchase
