"""Idempotency keys against every field of each keyed request (issue 15), on SQLite and
PostgreSQL.

DESIGN.md: "every retryable write takes an idempotency key" and "a retry with the same
idempotency key returns the first result". So a key reused with the same request is a replay
(the first answer, nothing booked twice) and reused with any field changed is a conflict that
changes nothing: never the first receipt for a different request. Keys are per merchant (the
till's own keys), so the same key at another merchant is another request altogether. Who sent
it (the ``staff`` member named by the bot) is not part of the request: a retry from the other
cashier's phone is the same purchase.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import select

from ledger.errors import CodeNotFound, CodeUsed, IdempotencyConflict, LedgerError, Throttled
from ledger.models import PreviewRequest, PurchaseRequest, RedeemInviteRequest, RedeemRequest
from ledger.principal import SYSTEM, Principal
from ledger.schema import IdempotencyRecord, RedemptionCode
from ledger.service import LedgerService
from tests.conftest import Served, World
from tests.ledger_support import diff, http, is_error, snapshot


async def _refused(
    s: LedgerService, attempt: Any, error: type[LedgerError] = IdempotencyConflict
) -> None:
    """``attempt`` raises ``error`` and leaves every ledger table as it was."""
    before = await snapshot(s)
    with pytest.raises(error) as caught:
        await attempt
    assert diff(before, await snapshot(s)) == []
    if error is IdempotencyConflict:  # the till is told which of its keys it reused
        key = caught.value.details.get("key")
        assert isinstance(key, str) and key.endswith("-key-1"), caught.value.details


async def _staff(s: LedgerService, merchant_id: int, who: str) -> dict[str, str]:
    invite = await s.create_staff_invite(SYSTEM, merchant_id)
    await s.redeem_staff_invite(
        SYSTEM, RedeemInviteRequest(code=invite.code, channel="telegram", external_id=who)
    )
    return {"channel": "telegram", "external_id": who}


async def test_purchase_key_against_every_field(world: World) -> None:
    s, shop, other = world.service, world.merchant_id, world.other_merchant_id
    bot = Principal("bot")
    first_cashier = await _staff(s, shop, "cashier-1")
    second_cashier = await _staff(s, shop, "cashier-2")
    base: dict[str, Any] = {
        "merchant_id": shop,
        "member_id": world.member_ids[0],
        "amount_fen": 12_345,
        "green_tags": ["own_cup", "no_bag"],
        "idempotency_key": "purchase-key-1",
        "staff": first_cashier,
    }
    first = await s.record_purchase(bot, PurchaseRequest(**base))
    same = [
        base,
        {**base, "green_tags": ["no_bag", "own_cup"]},  # a set: order is not a difference
        {**base, "green_tags": ["no_bag", "own_cup", "no_bag"]},
        {**base, "staff": second_cashier},  # the other cashier's retry
    ]
    for request in same:
        before = await snapshot(s)
        assert await s.record_purchase(bot, PurchaseRequest(**request)) == first, request
        assert diff(before, await snapshot(s)) == []
    for change in (
        {"member_id": world.member_ids[1]},
        {"amount_fen": 12_346},
        {"green_tags": ["own_cup"]},
        {"green_tags": []},
    ):
        await _refused(s, s.record_purchase(bot, PurchaseRequest(**{**base, **change})))
    # The same key at another merchant is that merchant's own, new purchase.
    elsewhere = await s.record_purchase(
        Principal("merchant", other),
        PurchaseRequest(**{**base, "merchant_id": other, "staff": None}),
    )
    assert elsewhere.purchase_id != first.purchase_id and elsewhere.merchant_id == other


async def test_redemption_key_against_every_field(world: World) -> None:
    s, shop, other = world.service, world.merchant_id, world.other_merchant_id
    bot = Principal("bot")
    cashier = await _staff(s, shop, "cashier-1")
    other_cashier = await _staff(s, shop, "cashier-2")
    mine = await s.issue_code(SYSTEM, world.member_ids[0])
    theirs = await s.issue_code(SYSTEM, world.member_ids[1])
    base: dict[str, Any] = {
        "code": mine.numeric_code,
        "merchant_id": shop,
        "bill_fen": 8_800,
        "vouchers_applied_fen": 0,
        "pay_fen": 8_800,
        "idempotency_key": "redeem-key-1",
        "staff": cashier,
    }
    first = await s.redeem(bot, RedeemRequest(**base))
    for request in (
        base,
        {**base, "code": mine.link_code},  # the same code, scanned instead of typed
        {**base, "staff": other_cashier},
    ):
        before = await snapshot(s)
        assert await s.redeem(bot, RedeemRequest(**request)) == first, request
        assert diff(before, await snapshot(s)) == []
    # Another customer's live code under the first one's key: a conflict, never the first
    # customer's receipt, and the second customer's code stays live.
    await _refused(s, s.redeem(bot, RedeemRequest(**{**base, "code": theirs.numeric_code})))
    await _refused(s, s.redeem(bot, RedeemRequest(**{**base, "code": theirs.link_code})))
    await _refused(
        s, s.redeem(bot, RedeemRequest(**{**base, "bill_fen": 8_801, "pay_fen": 8_801}))
    )
    # The figures the cashier read out are part of the request too (issue 11).
    await _refused(s, s.redeem(bot, RedeemRequest(
        **{**base, "vouchers_applied_fen": 1, "pay_fen": 8_799})))
    still_live = await s.preview_redemption(
        bot, PreviewRequest(code=theirs.numeric_code, merchant_id=shop, bill_fen=100, staff=cashier)
    )
    assert still_live.code_expires_at == theirs.expires_at
    # The same key at another merchant is a new redemption there: the code is already used.
    await _refused(
        s,
        s.redeem(Principal("merchant", other),
                 RedeemRequest(**{**base, "merchant_id": other, "staff": None})),
        CodeUsed,
    )


async def test_a_throttled_till_gets_its_receipt_and_nothing_else(world: World) -> None:
    """While locked out for guessing, a retry of a redemption that went through is answered
    from its key; the same key with another code is refused as throttled, not answered."""
    s, shop = world.service, world.merchant_id
    till = Principal("merchant", shop)
    mine = await s.issue_code(SYSTEM, world.member_ids[0])
    theirs = await s.issue_code(SYSTEM, world.member_ids[1])
    base = {"code": mine.numeric_code, "merchant_id": shop, "bill_fen": 5_000,
            "vouchers_applied_fen": 0, "pay_fen": 5_000, "idempotency_key": "throttled-key"}
    first = await s.redeem(till, RedeemRequest(**base))
    for _ in range(6):
        with pytest.raises(CodeNotFound):
            await s.preview_redemption(
                till, PreviewRequest(code="1" * 20, merchant_id=shop, bill_fen=100)
            )
    assert await s.redeem(till, RedeemRequest(**base)) == first
    await _refused(s, s.redeem(till, RedeemRequest(**{**base, "code": theirs.numeric_code})),
                   Throttled)
    await _refused(
        s, s.redeem(till, RedeemRequest(**{**base, "bill_fen": 5_001, "pay_fen": 5_001})),
        Throttled,
    )
    await _refused(s, s.redeem(till, RedeemRequest(**{**base, "idempotency_key": "never-used"})),
                   Throttled)


def test_fingerprints_survive_an_upgrade() -> None:
    """A till may retry across a deploy, so a request's fingerprint is a fixed function of its
    fields: SHA-256 of the compact JSON with sorted keys, whatever order the code builds it in."""
    from hashlib import sha256

    from ledger.idempotency import request_hash

    canonical = '{"bill_fen":8800,"code":"abc","merchant_id":1}'
    assert request_hash({"merchant_id": 1, "code": "abc", "bill_fen": 8800}) == sha256(
        canonical.encode()
    ).hexdigest()


async def test_a_nul_in_text_is_a_400_not_a_500(served: Served, http_session: Any) -> None:
    """Found once the schemathesis seed varied (issue 15): PostgreSQL text cannot hold U+0000,
    so an external id or a merchant name carrying one was a 500 there and fine on SQLite."""
    for path, key, body in (
        ("/v1/members/resolve", "bot", {"channel": "test", "external_id": "a\u0000b"}),
        ("/v1/merchants", "admin",
         {"name": "店\u0000", "category": "cafe", "lat": 30.2, "lon": 119.7}),
    ):
        answer = await http(http_session, "POST", served.url + path, key=served.keys[key],
                            json_body=body)
        assert is_error(answer, 400, "invalid_request") is None, (path, answer)


# --- every field of each keyed route, over HTTP, one case per field (issue 15) ---------------
#
# Each case changes one field of a request the till already sent with its key (or two that
# must move together), and says what the ledger answers, written here from DESIGN.md's rules,
# not read from the code: the same purchase or redemption is a replay of the first answer; a
# different one under a used key is ``409 idempotency_conflict``; figures that do not add up
# are ``400 invalid_request`` before any key is looked at; another merchant's keys are another
# space. Values named in capitals stand for the world's ids and codes (``_resolve``).

REPLAY = "replay"  # 201 with the first answer's body, nothing booked
NEW = "new"  # 201, a second purchase booked
Expected = tuple[int, str]  # (status, error code) of a refusal; nothing changes

CONFLICT: Expected = (409, "idempotency_conflict")
INVALID: Expected = (400, "invalid_request")

PURCHASE_CASES: list[Any] = [
    pytest.param({"merchant_id": "OTHER_SHOP", "staff": "OTHER_CASHIER"}, NEW,
                 id="merchant_id-another-merchants-key-space"),
    pytest.param({"merchant_id": "OTHER_SHOP"}, (403, "not_staff"),
                 id="merchant_id-not-this-cashiers-shop"),
    pytest.param({"member_id": "SECOND_MEMBER"}, CONFLICT, id="member_id"),
    pytest.param({"amount_fen": 12_346}, CONFLICT, id="amount_fen-one-fen-more"),
    pytest.param({"amount_fen": 12_344}, CONFLICT, id="amount_fen-one-fen-less"),
    pytest.param({"green_tags": ["own_cup"]}, CONFLICT, id="green_tags-one-dropped"),
    pytest.param({"green_tags": []}, CONFLICT, id="green_tags-none"),
    pytest.param({"green_tags": ["own_cup", "no_bag", "own_bottle"]}, CONFLICT,
                 id="green_tags-one-added"),
    pytest.param({"green_tags": ["no_bag", "own_cup"]}, REPLAY, id="green_tags-reordered"),
    pytest.param({"green_tags": ["own_cup", "no_bag", "own_cup"]}, REPLAY,
                 id="green_tags-repeated"),
    pytest.param({"idempotency_key": "purchase-key-2"}, NEW, id="idempotency_key"),
    pytest.param({"staff": "SECOND_CASHIER"}, REPLAY, id="staff-the-other-cashiers-retry"),
    # The same member named by their code instead of their id is another request: its code is
    # spent; a key names one request (issue 11).
    pytest.param({"member_id": None, "code": "MY_CODE"}, CONFLICT, id="code-instead-of-id"),
    # The store a till names is where it is booked, not what it is: a retry naming the shop's
    # store is the first purchase (issue 11, stores).
    pytest.param({"store_id": "SHOP_STORE"}, REPLAY, id="store_id-the-shops-store"),
]

REDEEM_CASES: list[Any] = [
    pytest.param({"code": "MY_LINK_CODE"}, REPLAY, id="code-same-code-scanned"),
    pytest.param({"code": "THEIR_CODE"}, CONFLICT, id="code-another-customers"),
    pytest.param({"code": "THEIR_LINK_CODE"}, CONFLICT, id="code-another-customers-scanned"),
    pytest.param({"code": "1" * 20}, CONFLICT, id="code-unknown"),
    pytest.param({"merchant_id": "OTHER_SHOP", "staff": "OTHER_CASHIER"}, (409, "code_used"),
                 id="merchant_id-another-merchants-key-space"),
    pytest.param({"bill_fen": 8_801}, INVALID, id="bill_fen-alone-does-not-add-up"),
    pytest.param({"bill_fen": 8_801, "pay_fen": 8_801}, CONFLICT, id="bill_fen"),
    pytest.param({"vouchers_applied_fen": 1}, INVALID, id="vouchers_applied_fen-alone"),
    pytest.param({"vouchers_applied_fen": 1, "pay_fen": 8_799}, CONFLICT,
                 id="vouchers_applied_fen"),
    pytest.param({"pay_fen": 8_799}, INVALID, id="pay_fen-alone-does-not-add-up"),
    pytest.param({"idempotency_key": "redeem-key-2"}, (409, "code_used"), id="idempotency_key"),
    pytest.param({"staff": "SECOND_CASHIER"}, REPLAY, id="staff-the-other-cashiers-retry"),
    pytest.param({"store_id": "SHOP_STORE"}, REPLAY, id="store_id-the-shops-store"),
]


def _changed_fields(cases: list[Any]) -> set[str]:
    return {field for case in cases for field in case.values[0]}


def test_every_field_of_each_keyed_request_has_a_case() -> None:
    """A field added to a keyed request needs its own case above (the answers stay written)."""
    assert _changed_fields(PURCHASE_CASES) == set(PurchaseRequest.model_fields)
    assert _changed_fields(REDEEM_CASES) == set(RedeemRequest.model_fields)


async def _names(world: World) -> dict[str, Any]:
    """Cashiers at both shops and a live code for each of two members, by the names the cases
    use."""
    s, shop, other = world.service, world.merchant_id, world.other_merchant_id
    mine = await s.issue_code(SYSTEM, world.member_ids[0])
    theirs = await s.issue_code(SYSTEM, world.member_ids[1])
    return {
        "OTHER_SHOP": other,
        "SHOP_STORE": (await s.list_stores(SYSTEM, shop)).stores[0].id,
        "SECOND_MEMBER": world.member_ids[1],
        "FIRST_CASHIER": await _staff(s, shop, "cashier-1"),
        "SECOND_CASHIER": await _staff(s, shop, "cashier-2"),
        "OTHER_CASHIER": await _staff(s, other, "cashier-3"),
        "MY_CODE": mine.numeric_code,
        "MY_LINK_CODE": mine.link_code,
        "THEIR_CODE": theirs.numeric_code,
        "THEIR_LINK_CODE": theirs.link_code,
    }


def _resolve(change: dict[str, Any], names: dict[str, Any]) -> dict[str, Any]:
    return {
        field: names[value] if isinstance(value, str) and value in names else value
        for field, value in change.items()
    }


async def _answers_as_written(
    served: Served, http_session: Any, path: str, base: dict[str, Any],
    change: dict[str, Any], expected: str | Expected,
) -> None:
    """Send ``base`` with its key, then ``change`` applied to it under the same circumstances;
    the second answer is ``expected`` and a refusal or a replay changes no ledger table."""
    url, key = served.url + path, served.keys["bot"]
    first = await http(http_session, "POST", url, key=key, json_body=base)
    assert first.status == 201, first
    before = await snapshot(served.service)
    again = await http(http_session, "POST", url, key=key, json_body={**base, **change})
    after = await snapshot(served.service)
    if expected == NEW:
        assert again.status == 201, again
        assert again.body != first.body and diff(before, after) != []
        return
    assert diff(before, after) == [], (change, again)
    if expected == REPLAY:
        assert (again.status, again.body) == (201, first.body), change
    else:
        assert isinstance(expected, tuple)
        assert is_error(again, *expected) is None, change


@pytest.mark.parametrize(("change", "expected"), PURCHASE_CASES)
async def test_a_purchase_key_reused_with_one_field_changed(
    world: World, served: Served, http_session: Any,
    change: dict[str, Any], expected: str | Expected,
) -> None:
    names = await _names(world)
    base = {
        "merchant_id": world.merchant_id,
        "member_id": world.member_ids[0],
        "amount_fen": 12_345,
        "green_tags": ["own_cup", "no_bag"],
        "idempotency_key": "purchase-key-1",
        "staff": names["FIRST_CASHIER"],
    }
    await _answers_as_written(
        served, http_session, "/v1/purchases", base, _resolve(change, names), expected
    )


@pytest.mark.parametrize(("change", "expected"), REDEEM_CASES)
async def test_a_redemption_key_reused_with_one_field_changed(
    world: World, served: Served, http_session: Any,
    change: dict[str, Any], expected: str | Expected,
) -> None:
    names = await _names(world)
    base = {
        "code": names["MY_CODE"],
        "merchant_id": world.merchant_id,
        "bill_fen": 8_800,
        "vouchers_applied_fen": 0,
        "pay_fen": 8_800,
        "idempotency_key": "redeem-key-1",
        "staff": names["FIRST_CASHIER"],
    }
    await _answers_as_written(
        served, http_session, "/v1/redemptions", base, _resolve(change, names), expected
    )


async def _stored_fingerprint(s: LedgerService, key: str) -> str:
    async with s.ctx.db.read() as session:
        found = await session.scalar(
            select(IdempotencyRecord.request_hash).where(IdempotencyRecord.key == key)
        )
    assert isinstance(found, str)
    return found


def _sha256_of(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


async def test_stored_fingerprints_survive_an_upgrade(world: World) -> None:
    """A till may retry across a deploy, so what each keyed write stores as its fingerprint is
    written here byte for byte: a renamed or dropped field would turn every retry of a request
    made before the deploy into a conflict. (The code is stored as its hash, so the 20 digits
    and the link form are one request; tags as a sorted set.)"""
    s, shop, member = world.service, world.merchant_id, world.member_ids[0]
    till = Principal("merchant", shop)
    await s.record_purchase(till, PurchaseRequest(
        merchant_id=shop, member_id=member, amount_fen=12_345,
        green_tags=["own_cup", "no_bag", "own_cup"], idempotency_key="fingerprint-purchase",
    ))
    assert await _stored_fingerprint(s, "fingerprint-purchase") == _sha256_of(
        '{"amount_fen":12345,"green_tags":["no_bag","own_cup"],'
        f'"member_id":{member},"merchant_id":{shop}}}'
    )
    code = await s.issue_code(SYSTEM, member)
    await s.redeem(till, RedeemRequest(
        code=code.link_code, merchant_id=shop, bill_fen=8_800, vouchers_applied_fen=0,
        pay_fen=8_800, idempotency_key="fingerprint-redeem",
    ))
    async with s.ctx.db.read() as session:
        code_hash = await session.scalar(
            select(RedemptionCode.code_hash).where(RedemptionCode.member_id == member)
        )
    assert await _stored_fingerprint(s, "fingerprint-redeem") == _sha256_of(
        f'{{"bill_fen":8800,"code":"{code_hash}","merchant_id":{shop},'
        '"vouchers_applied_fen":0}'
    )
