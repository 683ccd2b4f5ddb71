"""Stores (门店, issue 11) on SQLite and PostgreSQL: a merchant's stores are listed by the nearby
search with the merchant's name; a cashier works at one store, and what they book records it;
``/today`` is per store for that cashier and the whole merchant for an owner; only owners (the
merchant's key, an admin) add and list stores, over HTTP as in-process."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from ledger import importer
from ledger.errors import InvalidRequest, NotOwner, StoreNotFound
from ledger.models import (
    Identity,
    MerchantIn,
    PreviewRequest,
    PurchaseRequest,
    RedeemInviteRequest,
    RedeemRequest,
    StoreIn,
)
from ledger.principal import SYSTEM, Principal
from ledger.schema import Purchase, Redemption
from ledger.service import LedgerService
from tests.conftest import Served, World
from tests.ledger_support import cli, http, is_error, offset, pay_with_code

BOT = Principal("bot", key_id=1)
OWNER = Identity(channel="telegram", external_id="owner-1")
WEST = Identity(channel="telegram", external_id="cashier-west")
ANYWHERE = Identity(channel="telegram", external_id="cashier-anywhere")
README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


async def link(service: LedgerService, merchant_id: int, who: Identity, **invite: object) -> None:
    made = await service.create_staff_invite(SYSTEM, merchant_id, **invite)  # type: ignore[arg-type]
    await service.redeem_staff_invite(
        SYSTEM, RedeemInviteRequest(code=made.code, channel=who.channel,
                                    external_id=who.external_id)
    )


async def test_every_merchant_has_its_place_as_its_first_store(world: World) -> None:
    service = world.service
    listed = await service.list_stores(SYSTEM, world.merchant_id)
    assert [(s.name, s.lat, s.lon) for s in listed.stores] == [
        ("锦城绿色生活超市", 30.2341, 119.7239)
    ]
    west = await service.add_store(
        SYSTEM, world.merchant_id,
        StoreIn(name="西街店", address="西街 8 号", lat=30.2300, lon=119.7100, hours="08:00-22:00"),
    )
    again = await service.list_stores(SYSTEM, world.merchant_id)
    assert [s.id for s in again.stores] == [listed.stores[0].id, west.id]
    assert again.stores[1] == west and west.merchant_id == world.merchant_id
    with pytest.raises(InvalidRequest, match="already has a store of that name"):
        await service.add_store(SYSTEM, world.merchant_id, StoreIn(name="西街店", lat=1, lon=1))
    # Another merchant may name a store the same.
    await service.add_store(SYSTEM, world.other_merchant_id, StoreIn(name="西街店", lat=1, lon=1))


async def test_nearby_lists_each_store_with_its_merchants_name(world: World) -> None:
    service = world.service
    chain = await service.create_merchant(
        SYSTEM, MerchantIn(name="绿叶便利", category="grocery", lat=31.0, lon=121.0,
                           address="总店路 1 号", hours="00:00-24:00")
    )
    lat, lon = offset(31.0, 121.0, 300, 0)
    branch = await service.add_store(
        SYSTEM, chain.id, StoreIn(name="北门店", address="北门 2 号", lat=lat, lon=lon,
                                  hours="07:00-23:00")
    )
    far = offset(31.0, 121.0, 5000, 0)
    await service.add_store(SYSTEM, chain.id, StoreIn(name="远郊店", lat=far[0], lon=far[1]))
    lat, lon = offset(31.0, 121.0, 280, 0)  # nearer the branch than the head shop
    near = await service.nearby(SYSTEM, lat, lon, 1000)
    assert near.total == 2 and near.categories == {"grocery": 2}
    first, second = near.merchants
    assert (first.id, first.name, first.store_id, first.store_name) == (
        chain.id, "绿叶便利", branch.id, "北门店"
    )
    assert (first.address, first.hours, first.distance_m) == ("北门 2 号", "07:00-23:00", 20)
    assert (second.store_name, second.address, second.hours) == ("绿叶便利", "总店路 1 号",
                                                                 "00:00-24:00")
    assert first.concession_bp == second.concession_bp == chain.concession_bp
    only = await service.nearby(SYSTEM, lat, lon, 1000, limit=1, offset=1)
    assert [m.store_id for m in only.merchants] == [second.store_id]


async def test_a_cashier_books_at_their_store_and_sees_its_day(world: World) -> None:
    service, shop = world.service, world.merchant_id
    await link(service, shop, OWNER)  # the first invite: an owner, merchant-wide
    west = await service.add_store(BOT, shop, StoreIn(name="西街店", lat=30.23, lon=119.71),
                                   OWNER)
    head = (await service.list_stores(BOT, shop, OWNER)).stores[0]
    invite = await service.create_staff_invite(BOT, shop, None, OWNER, west.id)
    assert (invite.role, invite.store_id) == ("cashier", west.id)
    await service.redeem_staff_invite(
        SYSTEM, RedeemInviteRequest(code=invite.code, channel=WEST.channel,
                                    external_id=WEST.external_id)
    )
    await link(service, shop, ANYWHERE, role="cashier")
    looked = await service.staff_lookup(BOT, WEST.channel, WEST.external_id)
    assert looked is not None and (looked.store_id, looked.store_name) == (west.id, "西街店")
    owner = await service.staff_lookup(BOT, OWNER.channel, OWNER.external_id)
    assert owner is not None and owner.store_id is None

    member = world.member_ids[0]
    await service.record_purchase(BOT, PurchaseRequest(
        merchant_id=shop, member_id=member, amount_fen=1000, idempotency_key="store-w1",
        staff=WEST))
    with pytest.raises(InvalidRequest, match="own store"):
        await service.record_purchase(BOT, PurchaseRequest(
            merchant_id=shop, member_id=member, amount_fen=1000, idempotency_key="store-w2",
            staff=WEST, store_id=head.id))
    await service.record_purchase(BOT, PurchaseRequest(  # merchant-wide: says where, or not
        merchant_id=shop, member_id=member, amount_fen=1000, idempotency_key="store-a1",
        staff=ANYWHERE, store_id=head.id))
    await service.record_purchase(SYSTEM, PurchaseRequest(
        merchant_id=shop, member_id=member, amount_fen=1000, idempotency_key="store-k1"))

    async def redeem(staff: Identity, bill: int, key: str) -> None:
        code = await service.issue_code(SYSTEM, world.member_ids[1])
        shown = await service.preview_redemption(BOT, PreviewRequest(
            code=code.numeric_code, merchant_id=shop, bill_fen=bill, staff=staff))
        await service.redeem(BOT, RedeemRequest(
            code=code.numeric_code, merchant_id=shop, bill_fen=bill,
            vouchers_applied_fen=shown.vouchers_applied_fen, pay_fen=shown.pay_fen,
            idempotency_key=key, staff=staff))

    await redeem(WEST, 2000, "store-r-west")
    await redeem(ANYWHERE, 3000, "store-r-any")
    await pay_with_code(service, shop, world.member_ids[2], 4000, "store-r-key")
    async with service.ctx.db.read() as session:
        bought = (await session.execute(
            select(Purchase.amount_fen, Purchase.store_id).order_by(Purchase.id))).all()
        redeemed = (await session.execute(
            select(Redemption.bill_fen, Redemption.store_id).order_by(Redemption.id))).all()
    assert [tuple(r) for r in bought] == [
        (1000, west.id), (1000, head.id), (1000, None), (2000, west.id), (3000, None),
        (4000, None),
    ]
    assert [tuple(r) for r in redeemed] == [(2000, west.id), (3000, None), (4000, None)]

    at_west = await service.today(BOT, shop, WEST)
    assert (at_west.store_id, at_west.count, at_west.bill_fen) == (west.id, 1, 2000)
    whole = await service.today(BOT, shop, OWNER)
    assert (whole.store_id, whole.count, whole.bill_fen) == (None, 3, 9000)
    asked = await service.today(BOT, shop, OWNER, store_id=west.id)
    assert (asked.store_id, asked.count) == (west.id, 1)
    anywhere = await service.today(BOT, shop, ANYWHERE)
    assert (anywhere.store_id, anywhere.count) == (None, 3)


async def test_stores_are_checked_against_their_merchant(world: World) -> None:
    service, shop, other = world.service, world.merchant_id, world.other_merchant_id
    theirs = (await service.list_stores(SYSTEM, other)).stores[0]
    with pytest.raises(StoreNotFound):
        await service.create_staff_invite(SYSTEM, shop, "cashier", store_id=theirs.id)
    with pytest.raises(StoreNotFound):
        await service.record_purchase(SYSTEM, PurchaseRequest(
            merchant_id=shop, member_id=world.member_ids[0], amount_fen=100,
            idempotency_key="store-xx", store_id=theirs.id))
    with pytest.raises(StoreNotFound):
        await service.today(SYSTEM, shop, store_id=theirs.id)
    mine = (await service.list_stores(SYSTEM, shop)).stores[0]
    with pytest.raises(InvalidRequest, match="merchant-wide"):
        await service.create_staff_invite(SYSTEM, shop, "owner", store_id=mine.id)
    await link(service, shop, OWNER)
    await link(service, shop, WEST, role="cashier", store_id=mine.id)
    with pytest.raises(NotOwner):
        await service.add_store(BOT, shop, StoreIn(name="收银员开的店", lat=1, lon=1), WEST)
    with pytest.raises(NotOwner):
        await service.list_stores(BOT, shop, WEST)
    assert [s.id for s in (await service.list_stores(SYSTEM, shop)).stores] == [mine.id]


async def test_stores_over_http(served: Served, http_session: aiohttp.ClientSession) -> None:
    """The client's add/list, and a merchant key cannot add a store to another merchant."""
    shop = (await served.service.create_merchant(
        SYSTEM, MerchantIn(name="HTTP 店", category="cafe", lat=30.0, lon=120.0))).id
    admin = served.client("admin")
    try:
        made = await admin.add_store(shop, "东门店", 30.001, 120.0, "东门", "09:00-18:00")
        listed = await admin.list_stores(shop)
    finally:
        await admin.close()
    assert [s.name for s in listed.stores] == ["HTTP 店", "东门店"]
    assert (made.address, made.hours, made.merchant_id) == ("东门", "09:00-18:00", shop)
    answer = await http(
        http_session, "POST", f"{served.url}/v1/merchants/{shop}/stores",
        key=served.keys["merchant"], json_body={"name": "x", "lat": 1, "lon": 1},
    )
    assert is_error(answer, 403, "forbidden") is None
    answer = await http(
        http_session, "GET", f"{served.url}/v1/merchants/{shop}/today",
        key=served.keys["admin"], params={"store_id": str(made.id)},
    )
    assert is_error(answer, 403, "forbidden") is None  # admins record and read nothing at a till


STORES_CSV = """\
external_ref,merchant_ref,name,category,lat,lon,address,hours
chain-1,,绿叶便利,grocery,31.0000,121.0000,总店路1号,00:00-24:00
,chain-1,北门店,,31.0030,121.0000,北门2号,07:00-23:00
,chain-1,南门店,,31.0000,abc,,
,nowhere,孤店,,31.0,121.0,,
,chain-1,,,31.0,121.0,,
"""


async def test_import_creates_the_stores_of_a_merchant(service: LedgerService) -> None:
    report = await importer.import_csv(service.ctx, io.StringIO(STORES_CSV))
    assert (report.imported, report.stores) == (1, 1)
    assert [line for line, _ in report.skipped] == [4, 5, 6]
    assert "lat and lon" in report.skipped[0][1] and "nowhere" in report.skipped[1][1]
    near = await service.nearby(SYSTEM, 31.0, 121.0, 1000)
    assert [(m.name, m.store_name, m.address) for m in near.merchants] == [
        ("绿叶便利", "绿叶便利", "总店路1号"), ("绿叶便利", "北门店", "北门2号")
    ]
    # The same file again: every store updated in place, none added.
    moved = STORES_CSV.replace("北门2号,07:00", "北门2号旁,06:00")
    again = await importer.import_csv(service.ctx, io.StringIO(moved))
    assert (again.imported, again.stores) == (1, 1)
    stores = (await service.list_stores(SYSTEM, near.merchants[0].id)).stores
    assert [(s.name, s.address, s.hours) for s in stores] == [
        ("绿叶便利", "总店路1号", "00:00-24:00"), ("北门店", "北门2号旁", "06:00-23:00")
    ]


async def test_stores_on_the_cli(service: LedgerService, database_url: str) -> None:
    shop = await service.create_merchant(
        SYSTEM, MerchantIn(name="命令行店", category="cafe", lat=30.0, lon=120.0)
    )
    run = await cli(database_url, "add-store", "--merchant", str(shop.id), "--name", "二号店",
                    "--lat", "30.01", "--lon", "120.0", "--address", "二路 2 号",
                    "--hours", "09:00-18:00")
    assert run.code == 0, run.err
    second = (await service.list_stores(SYSTEM, shop.id)).stores[1]
    assert run.out.strip() == f"store #{second.id} 二号店 added to merchant #{shop.id}"
    listed = await cli(database_url, "list-stores", "--merchant", str(shop.id))
    assert listed.code == 0, listed.err
    assert f"#{second.id}\t二号店\t二路 2 号\t30.01,120.0\t09:00-18:00" in listed.out.splitlines()
    assert listed.out.splitlines()[-1] == "2 stores"
    invite = await cli(database_url, "staff-invite", "--merchant", str(shop.id), "--role",
                       "cashier", "--store", str(second.id))
    assert invite.code == 0, invite.err
    assert f"(#{shop.id}, store #{second.id})" in invite.out
    again = await cli(database_url, "add-store", "--merchant", str(shop.id), "--name", "二号店",
                      "--lat", "30.01", "--lon", "120.0")
    assert again.code == 2 and "already has a store of that name" in again.err


async def test_the_readmes_example_imports_as_it_says(service: LedgerService) -> None:
    example = README.split("```csv\n", 1)[1].split("```", 1)[0]
    report = await importer.import_csv(service.ctx, io.StringIO(example))
    assert (report.imported, report.stores, report.skipped) == (1, 1, [])
    near = await service.nearby(SYSTEM, 31.2330, 121.4737, 1000)
    assert [(m.name, m.store_name, m.hours) for m in near.merchants] == [
        ("绿叶便利", "北门店", "07:00-23:00"), ("绿叶便利", "绿叶便利", "00:00-24:00")
    ]
