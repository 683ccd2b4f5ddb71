"""The HTTP API under bad input: every refusal is a 4xx in the agreed JSON shape, names its own
error code, and leaves every ledger table exactly as it was; nothing answers 5xx. Also /healthz
and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ledger.api.openapi import document
from ledger.models import MerchantIn, RedeemInviteRequest
from ledger.principal import SYSTEM
from tests.conftest import Served, World
from tests.ledger_support import (
    FixedClock,
    diff,
    http,
    is_error,
    resolve,
    response_schema,
    schema_errors,
    snapshot,
)

DOCUMENT = document()
STAFF = {"channel": "telegram", "external_id": "777"}


@dataclass
class Case:
    label: str
    method: str
    path: str
    role: str | None  # whose key; None sends no Authorization
    status: int
    code: str
    body: Any = None
    raw: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scene:
    shop: int
    other: int
    members: list[int]
    expired_code: str
    revoked_code: str
    used_code: str
    used_invite: str
    expired_invite: str


async def build_scene(served: Served, world: World, clock: FixedClock) -> Scene:
    """Vouchers, a staff member, and a code and an invite in every state that must be refused."""
    s = world.service
    shop, other = world.merchant_id, world.other_merchant_id
    m0, m1, m2 = world.member_ids
    merchant = served.client("merchant")
    bot = served.client("bot")
    try:
        await merchant.record_purchase(shop, m0, 1_000_000, "setup-key-1")
        await s.release(SYSTEM, s.ctx.today())
        await s.create_merchant(
            SYSTEM,
            MerchantIn(
                name="有编号的店", category="cafe", lat=30.1, lon=119.7, external_ref="shop-ref-1"
            ),
        )
        expired_invite = await s.create_staff_invite(SYSTEM, shop)
        clock.advance(hours=73)
        used_invite = await s.create_staff_invite(SYSTEM, shop)
        await bot.redeem_staff_invite(used_invite.code, STAFF["channel"], STAFF["external_id"])
        expired = await bot.issue_code(m1)
        clock.advance(seconds=301)
        revoked = await bot.issue_code(m0)
        await bot.issue_code(m0)
        used = await bot.issue_code(m2)
        await merchant.redeem(
            used.numeric_code, shop, 1000, "setup-key-2", vouchers_applied_fen=0, pay_fen=1000
        )
    finally:
        await merchant.close()
        await bot.close()
    return Scene(
        shop,
        other,
        [m0, m1, m2],
        expired.numeric_code,
        revoked.link_code,
        used.link_code,
        used_invite.code,
        expired_invite.code,
    )


def cases(sc: Scene) -> list[Case]:
    m0 = sc.members[0]
    buy: dict[str, Any] = {"merchant_id": sc.shop, "member_id": m0, "amount_fen": 1000}
    buy["idempotency_key"] = "key-bad-1"
    redeem: dict[str, Any] = {"code": sc.revoked_code, "merchant_id": sc.shop, "bill_fen": 1000}
    shown = {"vouchers_applied_fen": 0, "pay_fen": 1000}  # the preview's figures a redeem carries
    out: list[Case] = []
    bad = "400 invalid_request"

    def add(label: str, method: str, path: str, role: str | None, want: str, **kw: Any) -> None:
        status, code = want.split(" ")
        out.append(Case(label, method, path, role, int(status), code, **kw))

    def bad_buy(label: str, **changes: Any) -> None:
        body = {k: v for k, v in {**buy, **changes}.items() if v is not ...}
        add(f"purchase {label}", "POST", "/v1/purchases", "merchant", bad, body=body)

    # malformed bodies
    for label, raw in [
        ("truncated JSON", b'{"merchant_id": 1,'),
        ("empty body", b""),
        ("a list", b"[]"),
        ("null", b"null"),
        ("a string", b'"purchase"'),
        ("not UTF-8", b"\xff\xfe\x00{"),
        ("NaN", b'{"merchant_id": NaN}'),
        ("trailing garbage", b'{"merchant_id": 1} x'),
    ]:
        add(f"purchase {label}", "POST", "/v1/purchases", "merchant", bad, raw=raw)
    add("huge body", "POST", "/v1/purchases", "merchant", "413 too_large",
        raw=b"{" + b" " * 70_000)
    # wrong types, missing and unknown fields, out-of-range amounts
    purchase_changes: list[tuple[str, dict[str, Any]]] = [
        ("merchant_id as string", {"merchant_id": str(sc.shop)}),
        ("amount as string", {"amount_fen": "1000"}),
        ("amount as whole float", {"amount_fen": 1000.0}),
        ("amount as fraction", {"amount_fen": 999.5}),
        ("amount as boolean", {"amount_fen": True}),
        ("amount null", {"amount_fen": None}),
        ("member_id as list", {"member_id": [m0]}),
        ("green_tags as string", {"green_tags": "own_cup"}),
        ("green_tags of ints", {"green_tags": [1]}),
        ("green tag with spaces", {"green_tags": ["Own Cup"]}),
        ("key as int", {"idempotency_key": 12345678}),
        ("key too short", {"idempotency_key": "k1"}),
        ("key with spaces", {"idempotency_key": "key with spaces"}),
        ("staff as string", {"staff": "777"}),
        ("unknown field", {"points": 5}),
        ("zero amount", {"amount_fen": 0}),
        ("negative amount", {"amount_fen": -1000}),
        ("hugely negative", {"amount_fen": -(10**20)}),
        ("huge amount", {"amount_fen": 10**30}),
        ("over a million yuan", {"amount_fen": 100_000_001}),
        ("member id too big", {"member_id": 2**62 + 1}),
        ("member id zero", {"member_id": 0}),
        ("without merchant", {"merchant_id": ...}),
        ("without member", {"member_id": ...}),
        ("without amount", {"amount_fen": ...}),
        ("without key", {"idempotency_key": ...}),
    ]
    for label, changes in purchase_changes:
        bad_buy(label, **changes)
    add("reused key, other body", "POST", "/v1/purchases", "merchant", "409 idempotency_conflict",
        body={**buy, "idempotency_key": "setup-key-1", "amount_fen": 999})
    add("purchase unknown member", "POST", "/v1/purchases", "merchant", "404 member_not_found",
        body={**buy, "member_id": 999_999})
    for label, bill in [("zero", 0), ("negative", -5), ("float", 10.5), ("string", "10"),
                        ("over a million yuan", 100_000_001)]:
        add(f"preview bill {label}", "POST", "/v1/redemptions/preview", "merchant",
            "400 invalid_request", body={**redeem, "bill_fen": bill})
        add(f"redeem bill {label}", "POST", "/v1/redemptions", "merchant", "400 invalid_request",
            body={**redeem, **shown, "bill_fen": bill, "idempotency_key": "key-bad-2"})
    # codes in every unusable state, each with its own code
    for label, code, want in [
        ("expired", sc.expired_code, "410 code_expired"),
        ("used", sc.used_code, "409 code_used"),
        ("revoked", sc.revoked_code, "409 code_revoked"),
        ("unknown", "0" * 20, "404 code_not_found"),
        ("garbage", "hello", "404 code_not_found"),
    ]:
        add(f"preview {label} code", "POST", "/v1/redemptions/preview", "merchant", want,
            body={**redeem, "code": code})
        add(f"redeem {label} code", "POST", "/v1/redemptions", "merchant", want,
            body={**redeem, **shown, "code": code, "idempotency_key": f"key-{label}-1"})
    for label, code, want in [
        ("used", sc.used_invite, "409 invite_used"),
        ("expired", sc.expired_invite, "410 invite_expired"),
        ("unknown", "s" + "A" * 22, "404 invite_not_found"),
        ("garbage", "hello", "404 invite_not_found"),
    ]:
        add(f"{label} invite", "POST", "/v1/staff-invites/redeem", "bot", want,
            body={"code": code, "channel": "telegram", "external_id": "888"})
    # unknown ids and ids that are not ids
    member = f"/v1/members/{m0}"
    add("balance of nobody", "GET", "/v1/members/999999/balance", "bot", "404 member_not_found")
    add("profile of nobody", "GET", "/v1/members/999999", "bot", "404 member_not_found")
    add("update nobody", "PATCH", "/v1/members/999999", "bot", "404 member_not_found",
        body={"locale": "en"})
    add("link to nobody", "POST", "/v1/members/999999/identities", "bot", "404 member_not_found",
        body={"channel": "wechat", "external_id": "x"})
    add("code for nobody", "POST", "/v1/members/999999/redemption-codes", "bot",
        "404 member_not_found", body={})
    add("unknown merchant", "GET", "/v1/merchants/999999", "bot", "404 merchant_not_found")
    add("invite for unknown merchant", "POST", "/v1/staff-invites", "admin",
        "404 merchant_not_found", body={"merchant_id": 999_999})
    for raw_id in ["abc", "-1", "0", "1.5", "1e3", "99999999999999999999999", "%20", "0x10"]:
        add(f"member id {raw_id!r}", "GET", f"/v1/members/{raw_id}/balance", "bot",
            "404 not_found")
    add("merchant id 'abc'", "GET", "/v1/merchants/abc/today", "merchant", "404 not_found")
    add("no such route", "GET", "/v1/nothing-here", "bot", "404 not_found")
    add("wrong method", "DELETE", "/v1/purchases", "merchant", "405 method_not_allowed")
    # query strings
    for label, params in [
        ("unknown parameter", {"foo": "1"}),
        ("limit not a number", {"limit": "abc"}),
        ("limit negative", {"limit": "-1"}),
        ("limit too big", {"limit": "51"}),
        ("before zero", {"before": "0"}),
    ]:
        add(f"balance {label}", "GET", f"{member}/balance", "bot", "400 invalid_request",
            params=params)
    add("stats with a parameter", "GET", "/v1/stats", "admin", "400 invalid_request",
        params={"x": "1"})
    for label, params in [
        ("without lat", {"lon": "119.7"}),
        ("lat not a number", {"lat": "north", "lon": "119.7"}),
        ("lat out of range", {"lat": "91", "lon": "119.7"}),
        ("lat NaN", {"lat": "nan", "lon": "119.7"}),
        ("lon infinite", {"lat": "30", "lon": "inf"}),
        ("radius zero", {"lat": "30", "lon": "119.7", "radius_m": "0"}),
        ("radius past the rules", {"lat": "30", "lon": "119.7", "radius_m": "20001"}),
        ("limit zero", {"lat": "30", "lon": "119.7", "limit": "0"}),
        ("category too long", {"lat": "30", "lon": "119.7", "category": "c" * 41}),
    ]:
        add(f"nearby {label}", "GET", "/v1/merchants/nearby", "bot", "400 invalid_request",
            params=params)
    for label, params in [("after negative", {"after": "-1"}), ("limit zero", {"limit": "0"}),
                          ("limit too big", {"limit": "1001"}), ("typo", {"afer": "3"})]:
        add(f"events {label}", "GET", "/v1/events", "bot", "400 invalid_request", params=params)
    for label, day in [("bad", "2026-13-01"), ("first", "0001-01-01"), ("last", "9999-12-31")]:
        add(f"today {label} date", "GET", f"/v1/merchants/{sc.shop}/today", "merchant",
            "400 invalid_request", params={"date": day})
    # other bodies
    for label, body in [
        ("bad channel", {"channel": "Bad Channel", "external_id": "1"}),
        ("unknown locale", {"channel": "telegram", "external_id": "1", "locale": "fr"}),
        ("long name", {"channel": "telegram", "external_id": "1", "display_name": "x" * 65}),
        ("empty id", {"channel": "telegram", "external_id": ""}),
    ]:
        add(f"resolve {label}", "POST", "/v1/members/resolve", "bot", "400 invalid_request",
            body=body)
    add("link someone else's identity", "POST", f"{member}/identities", "bot",
        "400 invalid_request", body={"channel": "test", "external_id": "1"})
    add("update with unknown field", "PATCH", member, "bot", "400 invalid_request",
        body={"points": 1})
    merchant_changes: list[tuple[str, dict[str, Any]]] = [
        ("lat", {"lat": 91.0}),
        ("rate", {"concession_bp": 50}),
        ("category", {"category": "Bad Cat"}),
        ("lat as string", {"lat": "1"}),
        ("external_ref taken", {"external_ref": "shop-ref-1"}),
    ]
    for label, changes in merchant_changes:
        add(f"merchant bad {label}", "POST", "/v1/merchants", "admin", "400 invalid_request",
            body={"name": "x", "category": "cafe", "lat": 30.0, "lon": 120.0, **changes})
    for label, date in [("bad date", "2026-13-01"), ("date as int", 20260101)]:
        add(f"release {label}", "POST", "/v1/releases", "admin", "400 invalid_request",
            body={"date": date})
    add("code body not empty", "POST", f"{member}/redemption-codes", "bot",
        "400 invalid_request", body={"member_id": m0})
    # issue 14: every kind of input no field can hold, wherever it arrives
    add_issue14_cases(add, sc, buy, redeem)
    # who may do what
    add("merchant reads a balance", "GET", f"{member}/balance", "merchant", "403 forbidden")
    add("bot runs a release", "POST", "/v1/releases", "bot", "403 forbidden", body={})
    add("merchant adds a merchant", "POST", "/v1/merchants", "merchant", "403 forbidden",
        body={"name": "x", "category": "cafe", "lat": 30.0, "lon": 120.0})
    mine_not = {**buy, "merchant_id": sc.other, "idempotency_key": "key-other-1"}
    add("merchant buys for another", "POST", "/v1/purchases", "merchant", "403 forbidden",
        body=mine_not)
    add("merchant previews for another", "POST", "/v1/redemptions/preview", "merchant",
        "403 forbidden", body={**redeem, "merchant_id": sc.other})
    add("merchant redeems for another", "POST", "/v1/redemptions", "merchant", "403 forbidden",
        body={**redeem, **shown, "merchant_id": sc.other, "idempotency_key": "key-other-2"})
    add("merchant today of another", "GET", f"/v1/merchants/{sc.other}/today", "merchant",
        "403 forbidden")
    add("merchant invites for another", "POST", "/v1/staff-invites", "merchant", "403 forbidden",
        body={"merchant_id": sc.other})
    # the bot acts for a staff member, and must say which
    bot_buy = {**buy, "idempotency_key": "key-bot-1"}
    bot_redeem = {**redeem, **shown, "idempotency_key": "key-bot-2"}
    for label, staff, want in [
        ("without staff", None, "400 invalid_request"),
        ("for a stranger", {"channel": "telegram", "external_id": "999"}, "403 not_staff"),
    ]:
        extra = {"staff": staff} if staff else {}
        add(f"bot buys {label}", "POST", "/v1/purchases", "bot", want, body={**bot_buy, **extra})
        add(f"bot previews {label}", "POST", "/v1/redemptions/preview", "bot", want,
            body={**redeem, **extra})
        add(f"bot redeems {label}", "POST", "/v1/redemptions", "bot", want,
            body={**bot_redeem, **extra})
    add("bot today without staff", "GET", f"/v1/merchants/{sc.shop}/today", "bot",
        "400 invalid_request")
    add("staff of one shop buys at another", "POST", "/v1/purchases", "bot", "403 not_staff",
        body={**bot_buy, "merchant_id": sc.other, "staff": STAFF})
    add("staff of one shop redeems at another", "POST", "/v1/redemptions", "bot",
        "403 not_staff", body={**bot_redeem, "merchant_id": sc.other, "staff": STAFF})
    # authentication
    for label, headers in [
        ("no Authorization", {}),
        ("empty bearer", {"Authorization": "Bearer "}),
        ("garbage key", {"Authorization": "Bearer gp_bot_garbage"}),
        ("basic auth", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("just a word", {"Authorization": "garbage"}),
    ]:
        add(f"purchase {label}", "POST", "/v1/purchases", None, "401 unauthorized",
            body=buy, headers=headers)
        add(f"stats {label}", "GET", "/v1/stats", None, "401 unauthorized", headers=headers)
    return out


NINES = "9" * 4301  # one digit past Python's int-string limit
UNSTORABLE = {"NUL": "a\u0000b", "lone surrogate": "a\ud800b", "NUL alone": "\u0000"}


def _raw(body: dict[str, Any], field: str, text: str) -> bytes:
    """``body`` with ``field`` set to a JSON string literal spelled exactly as ``text``."""
    return json.dumps({**body, field: "@@"}).replace('"@@"', f'"{text}"').encode()


def add_issue14_cases(
    add: Callable[..., None], sc: Scene, buy: dict[str, Any], redeem: dict[str, Any]
) -> None:
    m0 = sc.members[0]
    bad = "400 invalid_request"
    # Oversized integers: in paths a 404 like any other non-id, in queries and bodies a 400.
    for label, raw_id in [("4301 digits", NINES), ("5000 digits", "1" * 5000),
                          ("20 digits", "1" + "0" * 19), ("Arabic-Indic digits", "%D9%A1"),
                          ("fullwidth digits", "%EF%BC%91")]:
        add(f"member {label}", "GET", f"/v1/members/{raw_id}", "bot", "404 not_found")
        add(f"merchant {label}", "GET", f"/v1/merchants/{raw_id}", "merchant", "404 not_found")
        add(f"today {label}", "GET", f"/v1/merchants/{raw_id}/today", "merchant",
            "404 not_found")
        add(f"code for member {label}", "POST", f"/v1/members/{raw_id}/redemption-codes", "bot",
            "404 not_found", body={})
    for name in ("before", "limit"):
        add(f"balance {name} {len(NINES)} digits", "GET", f"/v1/members/{m0}/balance", "bot",
            bad, params={name: NINES})
    add("events after 4301 digits", "GET", "/v1/events", "bot", bad, params={"after": NINES})
    add("nearby radius 4301 digits", "GET", "/v1/merchants/nearby", "bot", bad,
        params={"lat": "30", "lon": "119.7", "radius_m": NINES})
    add("nearby lat 4301 digits", "GET", "/v1/merchants/nearby", "bot", bad,
        params={"lat": NINES, "lon": "119.7"})
    for field_name in ("amount_fen", "merchant_id", "member_id"):
        add(f"purchase {field_name} of 4301 digits", "POST", "/v1/purchases", "merchant", bad,
            raw=_raw(buy, field_name, "x").replace(b'"x"', NINES.encode()))
    add("invite merchant of 4301 digits", "POST", "/v1/staff-invites", "admin", bad,
        raw=b'{"merchant_id": -' + NINES.encode() + b"}")
    # Text neither database can store, in every place a string arrives.
    for label, text in UNSTORABLE.items():
        json_text = json.dumps(text)[1:-1]
        add(f"display name {label}", "PATCH", f"/v1/members/{m0}", "bot", bad,
            raw=_raw({}, "display_name", json_text))
        add(f"resolve external id {label}", "POST", "/v1/members/resolve", "bot", bad,
            raw=_raw({"channel": "telegram"}, "external_id", json_text))
        add(f"resolve display name {label}", "POST", "/v1/members/resolve", "bot", bad,
            raw=_raw({"channel": "telegram", "external_id": "5"}, "display_name", json_text))
        add(f"link external id {label}", "POST", f"/v1/members/{m0}/identities", "bot", bad,
            raw=_raw({"channel": "wechat"}, "external_id", json_text))
        add(f"merchant name {label}", "POST", "/v1/merchants", "admin", bad,
            raw=_raw({"category": "cafe", "lat": 30.0, "lon": 120.0}, "name", json_text))
        add(f"merchant address {label}", "POST", "/v1/merchants", "admin", bad,
            raw=_raw({"name": "x", "category": "cafe", "lat": 30.0, "lon": 120.0}, "address",
                     json_text))
        add(f"invite identity {label}", "POST", "/v1/staff-invites/redeem", "bot", bad,
            raw=_raw({"code": "s" + "A" * 22, "channel": "telegram"}, "external_id", json_text))
        add(f"redeem code {label}", "POST", "/v1/redemptions/preview", "merchant", bad,
            raw=_raw(redeem, "code", json_text))
        add(f"a key named {label}", "PATCH", f"/v1/members/{m0}", "bot", bad,
            raw=("{" + json.dumps(text) + ': "x"}').encode())
        nested = json.dumps({"channel": "telegram", "external_id": "@@"}).replace(
            '"@@"', f'"{json_text}"')
        for what, body in [("purchase", {**buy, "idempotency_key": "key-bot-9"}),
                           ("redemption", {**redeem, "idempotency_key": "key-bot-10"})]:
            path = "/v1/purchases" if what == "purchase" else "/v1/redemptions"
            add(f"staff in {what} {label}", "POST", path, "bot", bad,
                raw=json.dumps({**body, "staff": "@@"}).replace('"@@"', nested).encode())
    # Query strings, percent-encoded as a client would send them: %00 is NUL, %ED%A0%80 the
    # UTF-8-looking spelling of a lone surrogate (not UTF-8 at all).
    for label, escaped in [("NUL", "a%00b"), ("surrogate bytes", "a%ED%A0%80b"),
                           ("NUL alone", "%00")]:
        add(f"staff lookup {label}", "GET", f"/v1/staff?channel=telegram&external_id={escaped}",
            "bot", bad)
        add(f"nearby category {label}", "GET",
            f"/v1/merchants/nearby?lat=30&lon=119.7&category={escaped}", "bot", bad)
        add(f"today staff {label}", "GET", f"/v1/merchants/{sc.shop}/today?staff_channel="
            f"telegram&staff_external_id={escaped}", "bot", bad)
        add(f"query name {label}", "GET", f"/v1/events?{escaped}=1", "bot", bad)
    # Ambiguous requests: a field twice, a body that says it is not JSON.
    twice = json.dumps(buy)[:-1] + ', "amount_fen": 100000000}'
    add("purchase amount twice", "POST", "/v1/purchases", "merchant", bad, raw=twice.encode())
    add("nested key twice", "POST", "/v1/purchases", "bot", bad,
        raw=(json.dumps({**buy, "idempotency_key": "key-bot-11"})[:-1]
             + ', "staff": {"channel": "telegram", "external_id": "1", "external_id": "2"}}'
             ).encode())
    add("balance limit twice", "GET", f"/v1/members/{m0}/balance?limit=1&limit=2", "bot", bad)
    for label, content_type, raw in [
        ("text/plain", "text/plain", json.dumps(buy).encode()),
        ("a form", "application/x-www-form-urlencoded", b"merchant_id=1&amount_fen=1"),
        ("multipart", "multipart/form-data; boundary=x",
         b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n'),
        ("XML", "application/xml", b"<purchase><amount_fen>1</amount_fen></purchase>"),
        ("JSON in Latin-1", "application/json; charset=latin-1", json.dumps(buy).encode()),
        ("octet-stream", "application/octet-stream", json.dumps(buy).encode()),
    ]:
        headers = {"Content-Type": content_type}
        add(f"purchase as {label}", "POST", "/v1/purchases", "merchant",
            "415 unsupported_media_type", raw=raw, headers=headers)
    add("code body as text/plain", "POST", f"/v1/members/{m0}/redemption-codes", "bot",
        "415 unsupported_media_type", raw=b"{}", headers={"Content-Type": "text/plain"})
    for label, raw in [("deeply nested", b"[" * 5000 + b"]" * 5000),
                       ("nested in a field", b'{"staff": ' + b"[" * 500 + b"]" * 500 + b"}"),
                       ("a number", b"12"), ("true", b"true"), ("Infinity", b'{"lat": Infinity}'),
                       ("a BOM", b"\xef\xbb\xbf{}")]:
        add(f"merchant body {label}", "POST", "/v1/merchants", "admin", bad, raw=raw)


async def test_bad_input_is_refused_and_changes_nothing(
    served: Served, world: World, clock: FixedClock, http_session: aiohttp.ClientSession
) -> None:
    scene = await build_scene(served, world, clock)
    table = cases(scene)
    assert len({c.label for c in table}) == len(table)
    before = await snapshot(served.service)
    assert before["purchases"] and before["redemptions"] and before["voucher_lots"]
    error_schema = {"$ref": "#/components/schemas/ErrorOut"}
    problems = []
    for case in table:
        answer = await http(
            http_session,
            case.method,
            served.url + case.path,
            key=served.keys[case.role] if case.role else None,
            json_body=case.body,
            raw=case.raw,
            params=case.params,
            headers=case.headers,
        )
        wrong = is_error(answer, case.status, case.code)
        if wrong is None:
            wrong = "; ".join(schema_errors(answer.body, error_schema, DOCUMENT)) or None
        changed = diff(before, await snapshot(served.service))
        if wrong or changed:
            problems.append(f"{case.label}: {wrong or ''} {changed or ''}")
        if changed:
            before = await snapshot(served.service)
    assert not problems, "\n".join(problems)


# --- /healthz and the OpenAPI document -------------------------------------------------------


ISSUE_PATHS = [
    ("post", "/v1/members/resolve"),
    ("get", "/v1/members/{member_id}/balance"),
    ("post", "/v1/purchases"),
    ("post", "/v1/members/{member_id}/redemption-codes"),
    ("post", "/v1/redemptions/preview"),
    ("post", "/v1/redemptions"),
    ("get", "/v1/merchants/nearby"),
    ("get", "/v1/events"),
    ("post", "/v1/releases"),
    ("post", "/v1/staff-invites"),
    ("post", "/v1/staff-invites/redeem"),
]
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_health_and_openapi_document(
    served: Served, http_session: aiohttp.ClientSession
) -> None:
    health = await http(http_session, "GET", served.url + "/healthz")
    assert (health.status, health.body) == (200, {"status": "ok"})
    served_doc = await http(http_session, "GET", served.url + "/v1/openapi.json")
    assert served_doc.status == 200
    doc = served_doc.body
    assert doc == DOCUMENT
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    for method, path in ISSUE_PATHS:
        assert method in doc["paths"].get(path, {}), f"{method.upper()} {path} is not documented"
    ids = []
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        templated = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            assert method in METHODS
            ids.append(op["operationId"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == templated, (path, declared)
            for p in op.get("parameters", []):
                assert p["in"] in {"path", "query", "header", "cookie"} and "schema" in p
                assert p["in"] != "path" or p["required"] is True
            assert op["responses"], path
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status) and response["description"]
            if path != "/healthz":
                # The public record is open to anyone (DESIGN.md "The seeds' other rules").
                public = path.startswith("/v1/public/")
                assert op["security"] == ([] if public else [{"bearer": []}]), path
                assert any(s.startswith("2") for s in op["responses"])
    assert len(ids) == len(set(ids))
    for ref in _refs(doc):
        assert resolve(doc, ref) is not None, ref
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # The checker the success tests rely on does reject what does not fit.
    balance = response_schema(doc, "get", "/v1/members/{member_id}/balance", 200)
    assert schema_errors({"member_id": "1"}, balance, doc)
    assert schema_errors({"error": {"code": 1}}, {"$ref": "#/components/schemas/ErrorOut"}, doc)


async def test_guessing_codes_is_throttled(
    served: Served, world: World, clock: FixedClock, http_session: aiohttp.ClientSession
) -> None:
    """Unknown codes from one till slow it down (429 throttled, with retry_after), whatever it
    sends next; other tills are unaffected; once the wait is over the till works again."""
    shop = world.merchant_id
    real = await world.service.issue_code(SYSTEM, world.member_ids[0])
    url = served.url + "/v1/redemptions/preview"
    key = served.keys["merchant"]

    async def preview(code: str, as_key: str = key, **extra: Any) -> Any:
        body = {"code": code, "merchant_id": shop, "bill_fen": 1000, **extra}
        return await http(http_session, "POST", url, key=as_key, json_body=body)

    paid = await world.service.issue_code(SYSTEM, world.member_ids[1])
    redeem = {"code": paid.link_code, "merchant_id": shop, "bill_fen": 1000,
              "vouchers_applied_fen": 0, "pay_fen": 1000, "idempotency_key": "till-retry-7"}
    redemptions = served.url + "/v1/redemptions"
    receipt = await http(http_session, "POST", redemptions, key=key, json_body=redeem)
    assert receipt.status == 201
    for n in range(6):
        assert is_error(await preview(f"{n:020d}"), 404, "code_not_found") is None
    # A locked-out till retrying a redemption that went through still gets its receipt,
    # whichever form of the code it sends; new work stays refused.
    again = {**redeem, "code": paid.numeric_code}
    retried = await http(http_session, "POST", redemptions, key=key, json_body=again)
    assert retried.status == 201 and retried.body == receipt.body
    fresh = {**again, "idempotency_key": "till-retry-8"}
    assert is_error(
        await http(http_session, "POST", redemptions, key=key, json_body=fresh), 429, "throttled"
    ) is None
    throttled = await preview(real.numeric_code)
    assert is_error(throttled, 429, "throttled") is None
    assert throttled.body["error"]["details"]["retry_after"] == 2
    # The staff member behind the bot is another till.
    invite = await world.service.create_staff_invite(SYSTEM, shop)
    await world.service.redeem_staff_invite(
        SYSTEM, RedeemInviteRequest(code=invite.code, channel="telegram", external_id="9")
    )
    other = await preview(
        real.numeric_code, served.keys["bot"], staff={"channel": "telegram", "external_id": "9"}
    )
    assert other.status == 200
    clock.advance(seconds=3)
    assert (await preview(real.numeric_code)).status == 200


async def test_header_bytes_that_are_not_utf8_are_refused_as_json(served: Served) -> None:
    """No client library sends them, so written by hand: a Content-Type, a request id and a key
    with bytes that are not UTF-8 are each an ordinary JSON refusal (once, the Content-Type's
    echo could not be encoded: a 500)."""
    host, port = served.url.removeprefix("http://").split(":")
    body = b'{"merchant_id": 1, "member_id": 1, "amount_fen": 1, "idempotency_key": "k-bytes-1"}'
    key = served.keys["merchant"].encode()
    for label, headers, want in [
        ("content type", b"Content-Type: application/json\xff\r\nAuthorization: Bearer " + key,
         415),
        ("content type charset", b"Content-Type: application/json; charset=\xe9\r\n"
         b"Authorization: Bearer " + key, 415),
        ("request id", b"Content-Type: application/json\r\nX-Request-Id: \xff\xfe\r\n"
         b"Authorization: Bearer " + key, 201),
        ("key", b"Content-Type: application/json\r\nAuthorization: Bearer gp_\xff", 401),
    ]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/purchases HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers
                     + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = await reader.read()
        writer.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert status == want, (label, answer[:300])
        decoded = json.loads(payload)
        assert want == 201 or isinstance(decoded["error"]["message"], str), (label, decoded)
        body = body.replace(b"k-bytes-1", b"k-bytes-2")
