"""A realistic demo alliance around Lin'an, Hangzhou: merchants, members and some history.

Deterministic (fixed random seed) and run once per database: a second run finds the demo
merchants already there and does nothing. History is recorded with the clock set back day by
day, with a release each evening, so members have points, vouchers and activity to look at.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass

from sqlalchemy import func, select

from ledger.merchants import create_many
from ledger.models import MerchantIn, PurchaseRequest, ResolveMemberRequest
from ledger.principal import SYSTEM
from ledger.schema import Merchant
from ledger.service import LedgerService

LINAN = (30.2336, 119.7247)  # 临安区 centre
DEMO_REF = "demo-"
CATEGORIES: dict[str, tuple[str, ...]] = {
    "grocery": ("便利店", "生鲜超市", "粮油店"),
    "cafe": ("咖啡馆", "奶茶店"),
    "restaurant": ("面馆", "小吃店", "家常菜馆", "馄饨店"),
    "bakery": ("烘焙坊", "面包房"),
    "pharmacy": ("大药房", "药店"),
    "bookstore": ("书店", "文具店"),
    "clothing": ("服装店", "鞋店"),
    "electronics": ("家电城", "数码店"),
    "fruit": ("水果店", "果蔬铺"),
    "tea": ("茶庄", "茶叶店"),
    "laundry": ("洗衣店",),
    "hairdresser": ("理发店", "美发沙龙"),
    "florist": ("花店",),
    "hardware": ("五金店",),
}
PLACES = (
    "临安",
    "锦城",
    "锦北",
    "玲珑",
    "青山湖",
    "钱王",
    "天目",
    "衣锦",
    "吴越",
    "石镜",
    "太湖源",
)
STREETS = (
    "钱王街",
    "衣锦街",
    "城中街",
    "万马路",
    "锦城路",
    "石镜街",
    "苕溪路",
    "江桥路",
    "农林大路",
)
HOURS = ("07:00-21:00", "08:00-22:00", "09:00-21:30", "10:00-22:00", "06:30-20:00", "00:00-24:00")
MEMBERS = (("seed", "1", "张晓明"), ("seed", "2", "李芳"), ("seed", "3", "王建国"))
DEMO_IDENTITY = ("console", "10001", "陈小绿")  # the person `greenpoints demo` plays


@dataclass(frozen=True)
class SeedReport:
    created: bool
    merchants: int
    members: int
    demo_member_id: int
    demo_merchant_id: int


def demo_merchants(count: int = 320, seed: int = 2026) -> list[MerchantIn]:
    rng = random.Random(seed)
    merchants = []
    for i in range(count):
        category = rng.choice(list(CATEGORIES))
        # Denser in the centre, thinning out to about 5 km, as real shops do.
        distance = 5000 * math.sqrt(rng.random()) * rng.random() ** 0.5
        bearing = rng.uniform(0, 2 * math.pi)
        lat = LINAN[0] + distance * math.cos(bearing) / 111_320
        lon = LINAN[1] + distance * math.sin(bearing) / (111_320 * math.cos(math.radians(LINAN[0])))
        name = f"{rng.choice(PLACES)}{rng.choice(CATEGORIES[category])}"
        merchants.append(
            MerchantIn(
                name=f"{name}（{rng.choice(STREETS)}店）" if rng.random() < 0.5 else name,
                category=category,
                address=f"杭州市临安区{rng.choice(STREETS)}{rng.randint(1, 388)}号",
                lat=round(lat, 6),
                lon=round(lon, 6),
                hours=rng.choice(HOURS),
                concession_bp=rng.choice((300, 500, 500, 800, 1000, 1500)),
                voucher_cap_bp=rng.choice((1000, 2000, 2000, 3000)),
                external_ref=f"{DEMO_REF}{i + 1:04d}",
            )
        )
    # The merchant the demo person stands next to, and the one the demo staff works at.
    merchants[0] = merchants[0].model_copy(
        update={
            "name": "锦城绿色生活超市",
            "category": "grocery",
            "lat": 30.2341,
            "lon": 119.7239,
            "address": "杭州市临安区钱王街88号",
            "concession_bp": 800,
        }
    )
    return merchants


async def seed_demo(service: LedgerService, days: int = 14) -> SeedReport:
    ctx = service.ctx
    async with ctx.db.read() as session:
        existing = await session.scalar(
            select(func.count(Merchant.id)).where(Merchant.external_ref.like(f"{DEMO_REF}%"))
        )
        first = await session.scalar(
            select(Merchant.id).where(Merchant.external_ref == f"{DEMO_REF}0001")
        )
    demo = await service.resolve_member(
        SYSTEM,
        ResolveMemberRequest(
            channel=DEMO_IDENTITY[0], external_id=DEMO_IDENTITY[1], display_name=DEMO_IDENTITY[2]
        ),
    )
    if existing:
        assert first is not None
        return SeedReport(False, existing, len(MEMBERS) + 1, demo.id, first)

    merchants = demo_merchants()
    async with ctx.db.write() as session:
        await create_many(session, merchants, ctx.now())
    async with ctx.db.read() as session:
        ids = list(
            (
                await session.scalars(
                    select(Merchant.id)
                    .where(Merchant.external_ref.like(f"{DEMO_REF}%"))
                    .order_by(Merchant.external_ref)
                )
            ).all()
        )
    member_ids = [demo.id]
    for channel, external_id, name in MEMBERS:
        member = await service.resolve_member(
            SYSTEM,
            ResolveMemberRequest(channel=channel, external_id=external_id, display_name=name),
        )
        member_ids.append(member.id)

    rng = random.Random(7)
    real_clock = ctx.clock
    start = real_clock().replace(hour=2, minute=0, second=0, microsecond=0)
    try:
        for back in range(days, 0, -1):
            day_start = start - dt.timedelta(days=back)
            for n in range(rng.randint(4, 9)):
                when = day_start + dt.timedelta(minutes=rng.randint(0, 600))
                ctx.clock = lambda when=when: when  # type: ignore[misc]
                await service.record_purchase(
                    SYSTEM,
                    PurchaseRequest(
                        merchant_id=rng.choice(ids[:40]),
                        member_id=rng.choice(member_ids),
                        amount_fen=rng.randint(8, 480) * 100 + rng.choice((0, 50, 90)),
                        green_tags=["own_cup"] if rng.random() < 0.3 else [],
                        idempotency_key=f"seed-{back:03d}-{n:03d}",
                    ),
                )
            ctx.clock = lambda d=day_start: d + dt.timedelta(hours=12)  # type: ignore[misc]
            await service.release(SYSTEM, (day_start + dt.timedelta(hours=12)).date())
    finally:
        ctx.clock = real_clock
    return SeedReport(True, len(merchants), len(member_ids), demo.id, ids[0])
