"""The ledger's operability surface: /metrics, request ids in answers and in logs."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from ledger.observability import RequestIdFilter, configure_logging
from tests.conftest import Served


async def test_metrics_count_requests_by_operation(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {served.keys['bot']}", "X-Request-Id": "trace-42"}
        async with http.get(f"{served.url}/v1/stats", headers=headers) as response:
            assert response.status == 200
            assert response.headers["X-Request-Id"] == "trace-42"
        async with http.get(f"{served.url}/metrics") as response:
            assert response.status == 200
            body = await response.text()
    line = next(
        ln for ln in body.splitlines()
        if ln.startswith("ledger_requests_total{") and 'operation="stats.read"' in ln
        and 'status="200"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert "ledger_request_seconds_bucket" in body


@pytest.mark.parametrize(
    "switch", [None, ("GREENPOINTS_LOG_FORMAT", "json"), ("GREENPOINTS_LOG_JSON", "1")]
)
def test_json_logs_carry_the_request_id(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    switch: tuple[str, str] | None,
) -> None:
    """Asked for in code, or by either environment switch the bot also reads."""
    from ledger import observability

    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    if switch is not None:
        monkeypatch.setenv(*switch)
    configure_logging(logging.INFO, json_lines=True if switch is None else None)
    token = observability.request_id.set("req-7")
    try:
        logging.getLogger("ledger.test").info("purchase recorded")
        assert any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters)
    finally:
        observability.request_id.reset(token)
        root.handlers[:] = saved
        root.setLevel(level)
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["message"] == "purchase recorded"
    assert record["request_id"] == "req-7" and record["level"] == "INFO"
