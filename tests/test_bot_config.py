"""A missing or bad setting stops start-up with one clear line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings, require_token


def _run_bot(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GREENPOINTS_")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "bot"], env={**clean, **env}, cwd=cwd,
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "GREENPOINTS_TELEGRAM_TOKEN"),
        ({"GREENPOINTS_TELEGRAM_TOKEN": "no-colon"}, "GREENPOINTS_TELEGRAM_TOKEN"),
        ({"GREENPOINTS_TELEGRAM_TOKEN": "1:x", "GREENPOINTS_ADMIN_IDS": "alice"},
         "GREENPOINTS_ADMIN_IDS"),
        ({"GREENPOINTS_TELEGRAM_TOKEN": "1:x", "GREENPOINTS_LEDGER_URL": "http://ledger"},
         "GREENPOINTS_LEDGER_API_KEY"),
        ({"GREENPOINTS_TELEGRAM_TOKEN": "1:x", "GREENPOINTS_WEBHOOK_URL": "ftp://x"},
         "GREENPOINTS_WEBHOOK_URL"),
        ({"GREENPOINTS_TELEGRAM_TOKEN": "1:x", "GREENPOINTS_RATE_OVERALL": "fast"},
         "GREENPOINTS_RATE_OVERALL"),
    ],
)
def test_bad_settings_stop_with_one_line(
    env: dict[str, str], names: str, tmp_path: Path
) -> None:
    result = _run_bot(env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0] and "Traceback" not in result.stderr


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GREENPOINTS_"):
            monkeypatch.delenv(key)
    (tmp_path / ".env").write_text("GREENPOINTS_ADMIN_IDS=7, 8\nGREENPOINTS_TELEGRAM_TOKEN=1:abc\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.admin_ids == frozenset({7, 8})
    assert require_token(settings) == "1:abc"
    with pytest.raises(SettingsError, match="GREENPOINTS_TELEGRAM_TOKEN"):
        require_token(load_settings(telegram_token=None))
