"""Contract: every ledger-client call, through the in-process and the HTTP transport, on SQLite
and PostgreSQL, answers the values the rules say — and every answer fits the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ledger.api.openapi import document
from ledger.api.operations import BY_NAME
from ledger_client import errors
from ledger_client.base import ROUTES
from tests.conftest import Call, Clients, Served, World
from tests.ledger_support import (
    BP,
    FixedClock,
    expected_purchase,
    haversine_m,
    masked,
    offset,
    response_schema,
    schema_errors,
)

DOC = document()


def assert_fit_document(calls: list[Call]) -> None:
    """Every recorded answer, success or refusal, matches its schema in the OpenAPI document."""
    problems = []
    for op_name, status, payload in calls:
        op = BY_NAME[op_name]
        schema = response_schema(DOC, op.method, op.path, status)
        problems += [f"{op_name} {status}: {e}" for e in schema_errors(payload, schema, DOC)]
    assert calls and not problems, problems


async def test_purchase_release_code_redeem(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    shop, (m0, m1, m2) = world.merchant_id, world.member_ids
    merchant, bot, admin = clients.merchant, clients.bot, clients.admin
    start = await admin.stats()
    assert (start.pool_fen, start.points_outstanding) == (0, 0)
    assert (start.members, start.merchants) == (3, 2)
    assert start.price.fen_per_point == "1.0000"

    # The first purchase mints at the initial price of one fen per point.
    big = await merchant.record_purchase(shop, m0, 10_000_000, "contract-p1")
    want = expected_purchase(10_000_000, 1000, 0, 0)
    assert (big.concession_fen, big.member_points, big.merchant_points) == (
        1_000_000,
        600_000,
        100_000,
    )
    assert (big.member_points, big.merchant_points) == (want.member_points, want.merchant_points)
    assert (big.price.pool_fen, big.price.points) == (0, 0)
    # Later ones at pool ÷ points, floored, green bonus included.
    green = await merchant.record_purchase(shop, m1, 12_345, "contract-p2", green_tags=["own_cup"])
    want = expected_purchase(12_345, 1000, 1_000_000, 700_000, green=True)
    assert (green.concession_fen, green.member_points, green.merchant_points) == (
        want.concession,
        want.member_points,
        want.merchant_points,
    ) == (1234, 604, 86)
    assert green.price.fen_per_point == "1.4285"  # 1,000,000 / 700,000

    # The daily release: 1 % of each holding, at the price when it starts.
    before = await admin.stats()
    pool, points = before.pool_fen, before.points_outstanding
    assert (pool, points) == (1_001_234, 700_690)
    holdings = {m0: 600_000, m1: 604, "shop": 100_086}
    burned = {who: held * 100 // BP for who, held in holdings.items()}
    value = {who: b * pool // points for who, b in burned.items()}
    released = await admin.release(world.service.ctx.today())
    assert (released.members_granted, released.merchants_granted) == (2, 1)
    assert released.points_burned == sum(burned.values())
    assert released.vouchers_fen == sum(value.values())
    after = await bot.stats()
    assert after.pool_fen == pool - released.vouchers_fen
    assert after.points_outstanding == points - released.points_burned
    assert after.vouchers_outstanding_fen == value[m0] + value[m1]

    balance = await bot.balance(m0)
    assert (balance.points, balance.vouchers_fen) == (600_000 - burned[m0], value[m0])
    assert balance.points_value_fen == balance.points * after.pool_fen // after.points_outstanding
    assert balance.nearest_expiry == clock.now + dt.timedelta(days=90)
    assert balance.nearest_expiry_fen == value[m0]
    assert [a.type for a in balance.activity] == ["voucher.granted", "points.earned"]
    assert balance.activity[0].points == -burned[m0]
    assert balance.activity[0].vouchers_fen == value[m0]

    code = await bot.issue_code(m0)
    assert code.numeric_code.isdigit() and len(code.numeric_code) == 20
    assert code.link_code.startswith("r") and len(code.link_code) == 13
    assert code.expires_at == clock.now + dt.timedelta(minutes=5)
    assert code.vouchers_fen == value[m0]

    # The voucher cap is 20 % of the bill; below it, all the member has.
    spaced = " ".join(code.numeric_code[i : i + 4] for i in range(0, 20, 4))
    small = await merchant.preview_redemption(spaced, shop, 10_000)
    assert (small.vouchers_applied_fen, small.pay_fen) == (2000, 8000)
    price_now = (after.pool_fen, after.points_outstanding)
    assert small.points_to_earn == expected_purchase(8000, 1000, *price_now).member_points
    assert small.member_masked == masked("会员0", m0) == "会**"
    assert small.code_expires_at == code.expires_at
    large = await merchant.preview_redemption(code.link_code, shop, 100_000)
    assert (large.vouchers_applied_fen, large.pay_fen) == (value[m0], 100_000 - value[m0])

    shown = {"vouchers_applied_fen": 2000, "pay_fen": 8000}
    receipt = await merchant.redeem(code.link_code, shop, 10_000, "contract-r1", **shown)
    assert (receipt.vouchers_applied_fen, receipt.pay_fen) == (2000, 8000)
    assert receipt.points_earned == small.points_to_earn
    assert (receipt.merchant_name, receipt.member_masked, receipt.at) == (
        "锦城绿色生活超市",
        "会**",
        clock.now,
    )
    assert await merchant.redeem(code.link_code, shop, 10_000, "contract-r1", **shown) == receipt
    with pytest.raises(errors.IdempotencyConflict):
        await merchant.redeem(
            code.link_code, shop, 10_001, "contract-r1", vouchers_applied_fen=2000, pay_fen=8001
        )
    with pytest.raises(errors.CodeUsed):
        await merchant.redeem(code.numeric_code, shop, 10_000, "contract-r2", **shown)

    balance = await bot.balance(m0)
    assert balance.vouchers_fen == value[m0] - 2000
    assert balance.points == 600_000 - burned[m0] + receipt.points_earned
    assert balance.activity[0].type == "voucher.redeemed"
    assert (balance.activity[0].vouchers_fen, balance.activity[0].amount_fen) == (-2000, 10_000)
    final = await admin.stats()
    assert final.vouchers_outstanding_fen == value[m0] - 2000 + value[m1]
    assert final.pool_fen == after.pool_fen + 800  # 10 % of the 8,000 fen paid
    assert final.active_7d == 3  # signing up counts as activity
    assert (await bot.balance(m2)).points == 0
    today = await merchant.today(shop)
    assert (today.count, today.bill_fen) == (1, 10_000)
    assert (today.vouchers_fen, today.paid_fen) == (2000, 8000)
    clock.advance(days=8)
    assert (await admin.stats()).active_7d == 0
    await merchant.record_purchase(shop, m2, 100, "contract-p3")
    assert (await admin.stats()).active_7d == 1
    assert_fit_document(clients.calls)


async def test_nearby_ranks_by_true_distance(clients: Clients, clock: FixedClock) -> None:
    centre = (31.000000, 121.000000)  # far from the world's merchants
    layout: list[tuple[str, str, float, float]] = [
        ("north cafe", "cafe", 100, 0),
        ("east cafe", "cafe", 0, 400),
        ("south grocer", "grocery", -800, 0),
        ("west bakery", "bakery", 0, -1200),
        ("north-east cafe", "cafe", 1025, 1025),
        ("south-west cafe", "cafe", -1110, -1110),  # ~1570 m: outside the default radius
        ("far florist", "florist", 5000, 0),
    ]
    created = []
    for name, category, north, east in reversed(layout):  # ids must not decide the order
        lat, lon = offset(*centre, north, east)
        created.append(
            await clients.admin.create_merchant(
                name=name, category=category, lat=lat, lon=lon, concession_bp=800
            )
        )
    distance = {m.id: haversine_m(*centre, m.lat, m.lon) for m in created}
    inside = sorted((m for m in created if distance[m.id] <= 1500), key=lambda m: distance[m.id])
    assert [m.name for m in inside] == [n for n, *_ in layout[:5]]

    near = await clients.bot.nearby(*centre)
    assert (near.total, near.radius_m) == (5, 1500)
    assert [m.id for m in near.merchants] == [m.id for m in inside]
    for m in near.merchants:
        assert abs(m.distance_m - distance[m.id]) <= 0.5
    assert near.categories == {"cafe": 3, "grocery": 1, "bakery": 1}

    cafes = await clients.merchant.nearby(*centre, category="cafe")
    assert [m.name for m in cafes.merchants] == ["north cafe", "east cafe", "north-east cafe"]
    assert cafes.total == 3 and cafes.categories == near.categories
    page = await clients.bot.nearby(*centre, limit=2, offset=2)
    assert [m.id for m in page.merchants] == [m.id for m in inside[2:4]]
    wide = await clients.admin.nearby(*centre, radius_m=5100)
    assert wide.total == 7 and wide.merchants[-1].name == "far florist"
    assert [m.id for m in wide.merchants] == sorted(distance, key=distance.__getitem__)
    one = await clients.bot.get_merchant(inside[0].id)
    assert one == created[-1] and (one.concession_bp, one.voucher_cap_bp) == (800, 2000)
    assert_fit_document(clients.calls)


async def test_events_and_activity_pages(clients: Clients, world: World, clock: FixedClock) -> None:
    shop, (m0, m1, _m2) = world.merchant_id, world.member_ids
    bought = []
    for n in range(7):
        clock.advance(minutes=1)
        member = m0 if n % 3 else m1
        key = f"events-{n:04d}"
        bought.append(await clients.merchant.record_purchase(shop, member, 1000 + n, key))

    page = await clients.bot.events()
    assert [e.seq for e in page.events] == list(range(1, 8))
    assert page.next_after == 7
    assert [e.type for e in page.events] == ["points.earned"] * 7
    assert [(e.member_id, e.payload["points"], e.payload["amount_fen"]) for e in page.events] == [
        (b.member_id, b.member_points, b.amount_fen) for b in bought
    ]
    assert [e.payload["purchase_id"] for e in page.events] == [b.purchase_id for b in bought]
    assert all(e.merchant_id == shop for e in page.events)
    empty = await clients.admin.events(after=page.next_after)
    assert (empty.events, empty.next_after) == ([], 7)

    seen: list[int] = []
    after = 0
    while True:
        part = await clients.bot.events(after=after, limit=3)
        if not part.events:
            break
        seen += [e.seq for e in part.events]
        after = part.next_after
    assert seen == list(range(1, 8))

    mine = [b for b in bought if b.member_id == m0]
    items: list[Any] = []
    before: int | None = None
    while True:
        balance = await clients.bot.balance(m0, limit=2, before=before)
        items += balance.activity
        assert len(balance.activity) <= 2
        if balance.activity_next_before is None:
            break
        before = balance.activity_next_before
    assert [(a.points, a.amount_fen) for a in items] == [
        (b.member_points, b.amount_fen) for b in reversed(mine)
    ]
    assert [a.event_id for a in items] == sorted((a.event_id for a in items), reverse=True)
    assert {a.merchant_name for a in items} == {"锦城绿色生活超市"}
    assert (await clients.bot.balance(m0, limit=0)).activity == []
    assert_fit_document(clients.calls)


async def test_members_and_staff(clients: Clients, world: World, clock: FixedClock) -> None:
    bot, merchant, admin = clients.bot, clients.merchant, clients.admin
    shop, m1 = world.merchant_id, world.member_ids[1]

    new = await bot.resolve_member("telegram", "4242", locale="en", display_name="Ann")
    assert new.created and (new.locale, new.display_name) == ("en", "Ann")
    again = await admin.resolve_member("telegram", "4242", locale="zh_Hant")
    assert (again.id, again.created, again.locale) == (new.id, False, "en")
    assert await bot.get_member(new.id) == again
    changed = await bot.update_member(new.id, locale="zh_Hant", display_name="Annie")
    assert (changed.id, changed.locale, changed.display_name) == (new.id, "zh_Hant", "Annie")
    linked = await bot.link_identity(new.id, "wechat", "wx-1")
    assert linked.id == new.id
    assert (await bot.resolve_member("wechat", "wx-1")).id == new.id

    invite = await merchant.create_staff_invite(shop)
    assert invite.code.startswith("s") and len(invite.code) == 23
    assert (invite.merchant_id, invite.expires_at) == (shop, clock.now + dt.timedelta(hours=72))
    link = await bot.redeem_staff_invite(invite.code, "telegram", "777")
    assert (link.merchant_id, link.merchant_name, link.channel, link.external_id) == (
        shop,
        "锦城绿色生活超市",
        "telegram",
        "777",
    )
    with pytest.raises(errors.InviteUsed):
        await bot.redeem_staff_invite(invite.code, "telegram", "778")
    assert await bot.staff_lookup("telegram", "777") == link
    assert await admin.staff_lookup("telegram", "778") is None

    staff = ("telegram", "777")
    bought = await bot.record_purchase(shop, m1, 50_000, "staff-p1", staff=staff)
    assert bought.member_points == 3000  # 10 % concession, 60 % of it, one fen per point
    code = await bot.issue_code(m1)
    assert code.vouchers_fen == 0
    preview = await bot.preview_redemption(code.numeric_code, shop, 2500, staff=staff)
    assert (preview.vouchers_applied_fen, preview.pay_fen) == (0, 2500)
    assert preview.member_masked == "会**"
    nameless = await bot.resolve_member("telegram", "no-name")
    shown = await bot.preview_redemption(
        (await bot.issue_code(nameless.id)).link_code, shop, 100, staff=staff
    )
    assert shown.member_masked == masked(None, nameless.id) == f"**{nameless.id:04d}"
    annie = (await bot.issue_code(new.id)).numeric_code
    ann = await bot.preview_redemption(annie, shop, 100, staff)
    assert ann.member_masked == "A**"  # "Annie": the first letter, nothing more
    receipt = await bot.redeem(
        code.numeric_code, shop, 2500, "staff-r1", staff=staff, vouchers_applied_fen=0, pay_fen=2500
    )
    assert (receipt.pay_fen, receipt.points_earned) == (2500, preview.points_to_earn)
    for view in (await bot.today(shop, staff=staff), await merchant.today(shop)):
        assert (view.count, view.bill_fen, view.vouchers_fen, view.paid_fen) == (1, 2500, 0, 2500)
        assert view.date == (clock.now + dt.timedelta(hours=8)).date()  # the day in Shanghai
    earlier = await merchant.today(shop, day=clock.now.date() - dt.timedelta(days=2))
    assert earlier.count == 0 and earlier.bill_fen == 0
    with pytest.raises(errors.NotStaff):
        await bot.today(world.other_merchant_id, staff=staff)
    stats = await admin.stats()
    assert (stats.members, stats.merchants) == (5, 2)
    assert_fit_document(clients.calls)


async def test_a_crash_inside_looks_the_same_through_both(
    clients: Clients, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected failure inside the ledger reaches the caller as the client's InternalError,
    whichever transport carried it, and the next call works."""

    async def crash(*_args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(served.service, "stats", crash)
    with pytest.raises(errors.InternalError) as caught:
        await clients.admin.stats()
    assert caught.value.status == 500 and "disk" not in caught.value.message
    monkeypatch.undo()
    assert (await clients.admin.stats()).members == 3


def test_client_and_server_share_one_operation_table() -> None:
    """Every operation the server serves, the client can call, by the same method and path."""
    served = {op.name: (op.method, op.path) for op in BY_NAME.values()}
    assert {name: (method, path) for name, (method, path, _retry) in ROUTES.items()} == served
    # Only calls that cannot take effect twice are retried by the HTTP client.
    retried = {name for name, (_m, _p, retry) in ROUTES.items() if retry}
    keyed = {"purchases.record", "redemptions.redeem"}
    assert retried >= keyed and not retried & {"codes.issue", "staff.invite", "merchants.create"}
