"""``greenpoints ledger import-merchants``, on SQLite and PostgreSQL: bad rows are reported with
their line numbers and skipped, the rest imported; a second import updates by external_ref."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from ledger import importer
from ledger.principal import SYSTEM
from ledger.schema import Merchant
from ledger.service import LedgerService
from tests.ledger_support import cli

FIRST = """\
external_ref,name,category,lat,lon,address,hours,concession_rate,voucher_cap
imp-001,绿源水果店,Fruit,30.2350,119.7250,临安区钱王街1号,08:00-21:00,8%,20
imp-002,青山咖啡,cafe,30.2360,119.7260,,,7.5,
imp-003,Bad Lat,cafe,95.0,119.7,,,,
imp-004,,cafe,30.1,119.7,,,,
imp-005,Bad Rate,cafe,30.1,119.7,,,abc,
imp-001,Duplicate Ref,cafe,30.1,119.7,,,,
,No Ref Bakery,bakery,30.2370,119.7270,,,5,
imp-006,Rate Too High,cafe,30.1,119.7,,,80,
imp-007,Lat Not A Number,cafe,north,119.7,,,,
imp-008,"Quoted, Name",tea,30.2380,119.7280,"地址, 有逗号",,3.25,15%
imp-009,NaN Lat,cafe,nan,119.7,,,,
imp-010,Infinite Lon,cafe,30.1,inf,,,,
imp-011,Rate Too Fine,cafe,30.1,119.7,,,7.125,
imp-012,Bad Category,Café Bar,30.1,119.7,,,,
"""
BAD_LINES = {4: "lat", 5: "name", 6: "percentage", 7: "repeats", 9: "concession_bp",
             10: "lat", 12: "lat", 13: "lon", 14: "two decimals", 15: "category"}

SECOND = """\
name,category,lat,lon,external_ref,concession_rate
绿源水果店（新址）,fruit,30.2500,119.7400,imp-001,12
新开面馆,restaurant,30.2390,119.7290,imp-013,
"""


async def merchants(service: LedgerService) -> dict[str | None, Merchant]:
    async with service.ctx.db.read() as session:
        rows = (await session.scalars(select(Merchant).order_by(Merchant.id))).all()
    return {m.name if m.external_ref is None else m.external_ref: m for m in rows}


async def test_import_merchants(service: LedgerService, database_url: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "merchants.csv"
    csv_file.write_text(FIRST, encoding="utf-8")
    run = await cli(database_url, "import-merchants", str(csv_file))
    assert run.code == 0, run.err
    assert "imported 4 merchants, skipped 10 rows" in run.out
    reported = {int(n): why for n, why in re.findall(r"line (\d+): skipped: (.*)", run.err)}
    assert set(reported) == set(BAD_LINES), run.err
    for line, word in BAD_LINES.items():
        assert word in reported[line], (line, reported[line])

    found = await merchants(service)
    assert set(found) == {"imp-001", "imp-002", "imp-008", "No Ref Bakery"}
    fruit = found["imp-001"]
    assert (fruit.name, fruit.category, fruit.lat_e6, fruit.lon_e6) == (
        "绿源水果店",
        "fruit",
        30_235_000,
        119_725_000,
    )
    assert (fruit.concession_bp, fruit.voucher_cap_bp, fruit.hours) == (800, 2000, "08:00-21:00")
    assert (found["imp-002"].concession_bp, found["imp-002"].voucher_cap_bp) == (750, 2000)
    assert (found["No Ref Bakery"].concession_bp, found["imp-008"].concession_bp) == (500, 325)
    assert (found["imp-008"].name, found["imp-008"].address) == ("Quoted, Name", "地址, 有逗号")
    assert found["imp-008"].voucher_cap_bp == 1500
    near = await service.nearby(SYSTEM, 30.2350, 119.7250, 500)
    assert near.merchants[0].id == fruit.id and near.merchants[0].distance_m == 0

    # Again, with an existing ref moved and re-rated, and a new one: update, not duplicate.
    report = await importer.import_csv(service.ctx, io.StringIO(SECOND))
    assert (report.imported, report.skipped) == (2, [])
    again = await merchants(service)
    assert set(again) == set(found) | {"imp-013"}
    moved = again["imp-001"]
    assert moved.id == fruit.id
    assert (moved.name, moved.concession_bp) == ("绿源水果店（新址）", 1200)
    assert (moved.lat_e6, moved.lon_e6) == (30_250_000, 119_740_000)
    old_place = await service.nearby(SYSTEM, 30.2350, 119.7250, 300)
    assert fruit.id not in {m.id for m in old_place.merchants}
    assert (await service.nearby(SYSTEM, 30.2500, 119.7400, 300)).merchants[0].id == fruit.id
    assert (await service.get_merchant(SYSTEM, fruit.id)).name == "绿源水果店（新址）"

    with pytest.raises(ValueError, match="lacks lat"):
        await importer.import_csv(service.ctx, io.StringIO("name,category,lon\nx,cafe,1\n"))
    assert set(await merchants(service)) == set(again)


# --- the encodings spreadsheets here save (issue 11) ------------------------------------------

SAVED_AS = {
    "excel-csv-gbk": lambda text: text.encode("gbk"),  # Chinese Excel's plain "CSV"
    "gb18030": lambda text: text.encode("gb18030"),
    "excel-csv-utf8-bom": lambda text: text.encode("utf-8-sig"),  # Excel's "CSV UTF-8"
    "wps-utf8": lambda text: text.encode("utf-8"),
    # Excel's "Unicode text": UTF-16 with a BOM, tab-separated (no field holds a tab or comma).
    "excel-unicode-text": lambda text: "\n".join(
        "\t".join(cells) for cells in __import__("csv").reader(io.StringIO(text))
    ).encode("utf-16"),
}


@pytest.mark.parametrize("saved_as", list(SAVED_AS))
async def test_import_reads_what_spreadsheets_save(
    service: LedgerService, database_url: str, tmp_path: Path, saved_as: str
) -> None:
    """The issue's case: a GBK file stopped with "'utf-8' codec can't decode byte 0xc2" and
    imported nothing. Every form imports the same merchants with the same names."""
    rows = FIRST
    if saved_as == "excel-unicode-text":  # no commas inside fields once tab-separated
        rows = rows.replace('"Quoted, Name"', "Quoted").replace('"地址, 有逗号"', "地址有逗号")
    csv_file = tmp_path / "merchants.csv"
    csv_file.write_bytes(SAVED_AS[saved_as](rows))
    run = await cli(database_url, "import-merchants", str(csv_file))
    assert run.code == 0, run.err
    assert "imported 4 merchants, skipped 10 rows" in run.out
    found = await merchants(service)
    assert found["imp-001"].name == "绿源水果店" and found["imp-001"].address == "临安区钱王街1号"
    assert found["imp-002"].name == "青山咖啡"


async def test_an_unreadable_file_names_the_line_and_imports_nothing(
    service: LedgerService, database_url: str, tmp_path: Path
) -> None:
    good = "external_ref,name,category,lat,lon\nimp-1,绿源水果店,fruit,30.2,119.7\n".encode()
    csv_file = tmp_path / "merchants.csv"
    csv_file.write_bytes(good + b"imp-2,\x80\xff\xfe,cafe,30.2,119.7\n")
    run = await cli(database_url, "import-merchants", str(csv_file))
    assert run.code == 2
    assert "line 3:" in run.err and "nothing was imported" in run.err
    assert "CSV UTF-8" in run.err  # what to do
    assert await merchants(service) == {}
