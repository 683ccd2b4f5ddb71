"""The 15-minute circle (issue 13) on the demo alliance (ledger/seed.py), SQLite and PostgreSQL.

The expected answers are worked out here from the seed's merchant list with this file's own
distance and its own statement of the default needs, then asked of the ledger in-process, over
HTTP with an admin key, and through ``greenpoints ledger circle-report`` (CSV and text)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from ledger import seed
from ledger.principal import SYSTEM
from ledger.service import LedgerService
from tests.conftest import Served
from tests.ledger_support import cli, haversine_m

# The default needs, stated again: need -> (group, merchant categories meeting it).
NEEDS = {
    "supermarket": ("basic", {"grocery", "supermarket"}),
    "fresh_food": ("basic", {"fruit", "fresh_food", "market"}),
    "breakfast": ("basic", {"breakfast", "bakery"}),
    "pharmacy": ("basic", {"pharmacy"}),
    "clinic": ("basic", {"clinic"}),
    "laundry": ("basic", {"laundry"}),
    "repairs": ("basic", {"repairs", "hardware"}),
    "hairdresser": ("basic", {"hairdresser"}),
    "restaurant": ("quality", {"restaurant"}),
    "cafe": ("quality", {"cafe", "tea"}),
    "bookstore": ("quality", {"bookstore"}),
    "florist": ("quality", {"florist"}),
    "fitness": ("quality", {"fitness"}),
    "elderly_care": ("quality", {"elderly_care"}),
}
RADIUS_M = 1000  # 1,200 m on foot ÷ 1.2 for streets that are not straight
CENTRE = seed.LINAN
OUTSKIRT = (30.2336 + 0.0300, 119.7247 + 0.0100)  # about 3.5 km north-north-east
FAR = (31.2304, 121.4737)  # Shanghai: no alliance merchant at all


def expected(lat: float, lon: float) -> dict[str, tuple[str, float] | None]:
    """need -> (name, metres) of the nearest demo merchant meeting it within the radius."""
    found: dict[str, tuple[str, float] | None] = {}
    for need, (_group, categories) in NEEDS.items():
        near = sorted(
            (haversine_m(lat, lon, m.lat, m.lon), m.name)
            for m in seed.demo_merchants()
            if m.category in categories
        )
        found[need] = (near[0][1], near[0][0]) if near and near[0][0] <= RADIUS_M else None
    return found


@pytest.fixture
async def demo(service: LedgerService) -> LedgerService:
    await seed.seed_demo(service, days=2)
    return service


async def test_circles_on_the_demo_alliance_name_the_gaps(demo: LedgerService) -> None:
    for lat, lon in (CENTRE, OUTSKIRT, FAR):
        want = expected(lat, lon)
        got = await demo.circle(SYSTEM, lat, lon)
        assert got.radius_m == RADIUS_M and got.walk_m == 1200
        assert got.gaps == [need for need, hit in want.items() if hit is None], (lat, lon)
        for cat in got.categories:
            assert cat.group == NEEDS[cat.key][0]
            hit = want[cat.key]
            if hit is None:
                assert cat.nearest is None and cat.count == 0
            else:
                assert cat.nearest is not None
                assert cat.nearest.name == hit[0]
                assert abs(cat.nearest.distance_m - hit[1]) <= 1
                assert cat.nearest.walk_m >= cat.nearest.distance_m
    centre = await demo.circle(SYSTEM, *CENTRE)
    # The demo has no clinic, gym or elderly care, and the centre has its supermarket.
    assert {"clinic", "fitness", "elderly_care"} <= set(centre.gaps)
    assert "supermarket" not in centre.gaps
    assert len((await demo.circle(SYSTEM, *FAR)).gaps) == len(NEEDS)
    distances = [m.distance_m for m in centre.merchants]
    assert distances == sorted(distances) and len(distances) > 20


async def test_admins_ask_over_http(served: Served) -> None:
    await seed.seed_demo(served.service, days=1)
    async with served.client("admin") as admin:
        got = await admin.circle(*CENTRE)
    assert got.gaps == [need for need, hit in expected(*CENTRE).items() if hit is None]


async def test_circle_report_for_a_csv_of_communities(
    demo: LedgerService, database_url: str, tmp_path: Path
) -> None:
    places = tmp_path / "communities.csv"
    places.write_text(
        "name,lat,lon,note\n"
        f"锦城社区,{CENTRE[0]},{CENTRE[1]},centre\n"
        "坏行,north,119.7\n"
        f"青山湖社区,{OUTSKIRT[0]},{OUTSKIRT[1]},\n"
        "远方,95,119.7,\n",
        encoding="utf-8",
    )
    await demo.ctx.db.dispose()
    run = await cli(database_url, "circle-report", str(places))
    assert run.code == 0, run.err
    assert "line 3: skipped" in run.err and "line 5: skipped" in run.err
    assert "circles" in run.err  # the progress bar
    rows = list(csv.DictReader(io.StringIO(run.out)))
    assert [r["community"] for r in rows] == ["锦城社区", "青山湖社区"]
    for row, place in zip(rows, (CENTRE, OUTSKIRT), strict=True):
        want = expected(*place)
        assert row["gaps"].split(";") == [n for n, hit in want.items() if hit is None]
        basic = [n for n, (g, _c) in NEEDS.items() if g == "basic"]
        assert int(row["basic_met"]) == sum(want[n] is not None for n in basic)
        assert row["basic_total"] == str(len(basic))
        hit = want["supermarket"]
        assert row["supermarket_nearest"] == (hit[0] if hit else "")
    text = await cli(database_url, "circle-report", "--format", "text", str(places))
    assert text.code == 0 and "clinic: GAP" in text.out and "锦城社区" in text.out
    # Saved by Chinese Excel (GBK), as import-merchants reads it (found by a new user's try).
    gbk = tmp_path / "communities-gbk.csv"
    gbk.write_bytes(places.read_text(encoding="utf-8").encode("gbk"))
    same = await cli(database_url, "circle-report", str(gbk))
    assert same.code == 0 and same.out == run.out, same.err
    bad = tmp_path / "bad.csv"
    bad.write_text("place,lat\nx,1\n", encoding="utf-8")
    refused = await cli(database_url, "circle-report", str(bad))
    assert refused.code == 2 and "lacks lon, name" in refused.err
