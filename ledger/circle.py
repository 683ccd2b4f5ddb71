"""The 15-minute convenience circle (一刻钟便民生活圈; DESIGN.md "The seeds' other rules").

For a place, which everyday needs have an alliance merchant within a 15-minute walk, the nearest
of each, and the gaps. Needs are configuration: each belongs to a group (basic needs 基本保障类,
quality 品质提升类, or any other the alliance names) and is met by one or more merchant
categories. A 15-minute walk is about 1,000-1,200 m on foot (``walk_m``); streets are not
straight, so the search radius is ``walk_m`` divided by a detour factor (default 1.2), and the
walking distance reported is the straight line times that factor.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import and_, or_, select

from ledger import geo
from ledger.context import Ctx
from ledger.errors import InvalidRequest
from ledger.models import CircleCategory, CircleMerchant, CircleOut
from ledger.schema import Merchant

E6 = 1_000_000
BP = 10_000
MAX_MERCHANTS = 500  # listed for the map; the per-need answers always see them all

DEFAULT_NEEDS: dict[str, dict[str, list[str]]] = {
    "basic": {
        "supermarket": ["grocery", "supermarket"],
        "fresh_food": ["fruit", "fresh_food", "market"],
        "breakfast": ["breakfast", "bakery"],
        "pharmacy": ["pharmacy"],
        "clinic": ["clinic"],
        "laundry": ["laundry"],
        "repairs": ["repairs", "hardware"],
        "hairdresser": ["hairdresser"],
    },
    "quality": {
        "restaurant": ["restaurant"],
        "cafe": ["cafe", "tea"],
        "bookstore": ["bookstore"],
        "florist": ["florist"],
        "fitness": ["fitness"],
        "elderly_care": ["elderly_care"],
    },
}


class CircleRules(BaseSettings):
    """Read from ``GREENPOINTS_CIRCLE_*``; ``NEEDS`` is JSON: {group: {need: [categories]}}."""

    model_config = SettingsConfigDict(env_prefix="GREENPOINTS_CIRCLE_", frozen=True, extra="ignore")

    walk_m: int = Field(1200, ge=100, le=5000)
    detour_bp: int = Field(12_000, ge=BP, le=3 * BP)  # walking path ÷ straight line
    speed_m_per_min: int = Field(80, ge=30, le=200)
    needs: dict[str, dict[str, list[str]]] = Field(default_factory=lambda: DEFAULT_NEEDS)

    @property
    def radius_m(self) -> int:
        return self.walk_m * BP // self.detour_bp


def _entry(ctx_rules: CircleRules, row: Any, lat: float, lon: float) -> CircleMerchant:
    merchant_id, name, category, lat_e6, lon_e6 = row
    straight = geo.haversine_m(lat, lon, lat_e6 / E6, lon_e6 / E6)
    walk = math.ceil(straight * ctx_rules.detour_bp / BP)
    return CircleMerchant(
        id=merchant_id,
        name=name,
        category=category,
        lat=lat_e6 / E6,
        lon=lon_e6 / E6,
        distance_m=round(straight),
        walk_m=walk,
        walk_minutes=geo.walking_minutes(walk, ctx_rules.speed_m_per_min),
    )


async def circle(ctx: Ctx, lat: float, lon: float, rules: CircleRules | None = None) -> CircleOut:
    """The circle around (``lat``, ``lon``) in degrees; InvalidRequest outside the globe."""
    rules = rules or CircleRules()
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or math.isnan(lat + lon):
        raise InvalidRequest("coordinates out of range", lat=lat, lon=lon)
    radius = rules.radius_m
    ranges = geo.cell_ranges(lat, lon, radius)
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(Merchant.id, Merchant.name, Merchant.category, Merchant.lat_e6,
                       Merchant.lon_e6)
                .where(
                    or_(*(and_(Merchant.cell >= lo, Merchant.cell <= hi) for lo, hi in ranges)),
                    Merchant.active.is_(True),
                )
            )
        ).all()
    inside = sorted(
        (m for m in (_entry(rules, r, lat, lon) for r in rows) if m.distance_m <= radius),
        key=lambda m: (m.distance_m, m.id),
    )
    categories: list[CircleCategory] = []
    for group, needs in rules.needs.items():
        for key, merchant_categories in needs.items():
            meeting = [m for m in inside if m.category in merchant_categories]
            categories.append(
                CircleCategory(
                    key=key,
                    group=group,
                    merchant_categories=list(merchant_categories),
                    count=len(meeting),
                    nearest=meeting[0] if meeting else None,
                )
            )
    return CircleOut(
        lat=lat,
        lon=lon,
        walk_m=rules.walk_m,
        radius_m=radius,
        categories=categories,
        gaps=[c.key for c in categories if c.nearest is None],
        merchants=inside[:MAX_MERCHANTS],
    )
