"""``greenpoints ledger backup`` onto the live database, its WAL file, a directory or a place
that cannot be written: one clear line on stderr, exit code 2, no traceback, no partial file
left, and the live ledger still verifies (issue 11's brief: it used to be a traceback)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ledger.principal import SYSTEM
from ledger.service import LedgerService
from tests.ledger_support import buy, cli


@pytest.fixture
async def ledger_file(tmp_path: Path) -> Path:
    path = tmp_path / "live" / "ledger.db"
    path.parent.mkdir()
    service = await LedgerService.open(f"sqlite:///{path}")
    try:
        await buy(service, await _shop(service), await _member(service), 1000, "backup-buy")
    finally:
        await service.close()
    return path


async def _shop(service: LedgerService) -> int:
    from ledger.models import MerchantIn

    shop = await service.create_merchant(
        SYSTEM, MerchantIn(name="店", category="grocery", lat=30.2, lon=119.7)
    )
    return shop.id


async def _member(service: LedgerService) -> int:
    from ledger.models import ResolveMemberRequest

    member = await service.resolve_member(
        SYSTEM, ResolveMemberRequest(channel="test", external_id="1")
    )
    return member.id


def _targets(live: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory")
    hard_link = tmp_path / "elsewhere.db"
    if not hard_link.exists():
        hard_link.hardlink_to(live)
    return {
        # Found trying it as an operator would: one file under a second name.
        "a hard link to the live file": (hard_link, "is the live ledger database itself"),
        "the live file": (live, "is the live ledger database itself"),
        "the live file by another path": (
            live.parent / ".." / "live" / "ledger.db",
            "is the live ledger database itself",
        ),
        "its WAL": (live.with_name("ledger.db-wal"), "is the live ledger database itself"),
        "a directory": (tmp_path, "is a directory"),
        # Unwritable even for root: a path through a file.
        "an unwritable path": (a_file / "copy.db", "cannot write the backup to"),
    }


@pytest.mark.parametrize(
    "which",
    ["the live file", "the live file by another path", "a hard link to the live file", "its WAL",
     "a directory", "an unwritable path"],
)
async def test_a_backup_that_cannot_be_written_is_one_line(
    ledger_file: Path, tmp_path: Path, which: str
) -> None:
    target, says = _targets(ledger_file, tmp_path)[which]
    url = f"sqlite:///{ledger_file}"
    run = await cli(url, "backup", str(target))
    assert run.code == 2, run
    assert run.err.count("\n") == 1 and run.err.startswith("backup refused: "), run.err
    assert says in run.err and "Traceback" not in run.err
    assert run.out == ""
    assert not await asyncio.to_thread(lambda: list(tmp_path.rglob("*.partial")))
    checked = await cli(url, "verify")
    assert checked.code == 0, checked
