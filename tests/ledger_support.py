"""Helpers shared by the ledger's correctness tests (tests/test_ledger_*.py).

Not fixtures (those live in conftest.py): a fixed clock, a whole-database snapshot to prove an
refused request changed nothing, an independent re-statement of the money rules to check the
ledger's answers against, a small JSON Schema checker for the OpenAPI document, and raw HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select

from ledger.context import utcnow
from ledger.models import (
    PreviewRequest,
    PurchaseOut,
    PurchaseRequest,
    RedeemRequest,
    RedemptionOut,
)
from ledger.principal import SYSTEM
from ledger.schema import Base
from ledger.service import LedgerService

BP = 10_000

# --- time -------------------------------------------------------------------------------------


class FixedClock:
    """A clock that only moves when a test moves it (naive UTC, like the ledger's own)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or utcnow().replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


# --- "nothing changed" ------------------------------------------------------------------------

# Tables a refused request may legitimately touch (the guess throttle), or that are not ledger
# state (keys, schema version); the feed position of an event is assigned when the feed is read.
_NOT_STATE = {"code_attempts", "api_keys", "alembic_version", "feed_state"}


async def snapshot(service: LedgerService) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table, in primary-key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with service.ctx.db.read() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in _NOT_STATE:
                continue
            cols = [c for c in table.columns if not (table.name == "events" and c.name == "seq")]
            query = select(*cols).order_by(*table.primary_key.columns)
            out[table.name] = [tuple(r) for r in (await session.execute(query)).all()]
    return out


def diff(before: Mapping[str, list[Any]], after: Mapping[str, list[Any]]) -> list[str]:
    return [
        f"{name}: {len(before[name])} rows -> {len(after[name])} rows"
        for name in before
        if before[name] != after[name]
    ]


# --- the money rules, stated again independently of ledger/money.py --------------------------


@dataclass(frozen=True)
class Expected:
    concession: int
    member_points: int
    merchant_points: int


def expected_purchase(
    amount: int, concession_bp: int, pool: int, points: int, green: bool = False
) -> Expected:
    concession = amount * concession_bp // BP
    member_bp = 6000 + (1000 if green else 0)

    def minted(share_bp: int) -> int:
        if pool > 0 and points > 0:
            return concession * share_bp * points // (BP * pool)
        return concession * share_bp // BP

    return Expected(concession, minted(member_bp), minted(1000))


def masked(name: str | None, member_id: int) -> str:
    return f"{name[0]}**" if name else f"**{member_id % 10000:04d}"


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * r * math.asin(math.sqrt(a))


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """A point about ``north_m`` north and ``east_m`` east of (lat, lon), rounded to 1e-6°."""
    dlat = math.degrees(north_m / 6_371_008.8)
    dlon = math.degrees(east_m / (6_371_008.8 * math.cos(math.radians(lat))))
    return round(lat + dlat, 6), round(lon + dlon, 6)


# --- JSON Schema (the subset pydantic emits), to hold answers to the OpenAPI document ---------

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_FORMATS: dict[str, Any] = {
    "date-time": lambda v: dt.datetime.fromisoformat(v.replace("Z", "+00:00")),
    "date": dt.date.fromisoformat,
}


def resolve(root: Mapping[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def schema_errors(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], where: str = "$"
) -> list[str]:
    """Why ``value`` does not match ``schema`` (empty when it does)."""
    if "$ref" in schema:
        return schema_errors(value, resolve(root, schema["$ref"]), root, where)
    errors: list[str] = []
    if "anyOf" in schema and all(schema_errors(value, s, root, where) for s in schema["anyOf"]):
        errors.append(f"{where}: matches none of anyOf")
    if "oneOf" in schema:
        matches = sum(not schema_errors(value, s, root, where) for s in schema["oneOf"])
        if matches != 1:
            errors.append(f"{where}: matches {matches} of oneOf")
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, root, where)
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [*errors, f"{where}: {value!r} is not {types}"]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e18):
            errors.append(f"{where}: length {len(value)} out of range")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") in _FORMATS:
            try:
                _FORMATS[schema["format"]](value)
            except ValueError:
                errors.append(f"{where}: {value!r} is not a {schema['format']}")
    low, high = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
    if _TYPES["number"](value) and not low <= value <= high:
        errors.append(f"{where}: {value} out of range")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if isinstance(sub, Mapping):
                errors += schema_errors(item, sub, root, f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], root, f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected {key}")
            elif isinstance(extra, Mapping):
                errors += schema_errors(item, extra, root, f"{where}.{key}")
    return errors


def response_schema(document: Mapping[str, Any], method: str, path: str, status: int) -> Any:
    responses = document["paths"][path][method.lower()]["responses"]
    return responses[str(status)]["content"]["application/json"]["schema"]


# --- raw HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


async def http(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    key: str | None = None,
    json_body: Any = None,
    raw: bytes | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request, the body decoded as JSON whatever the status (every answer should be JSON)."""
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else None if json_body is None else json.dumps(json_body).encode()
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    async with session.request(method, url, data=data, params=params, headers=sent) as response:
        text = await response.text()
        return Answer(response.status, json.loads(text) if text else None)


def is_error(answer: Answer, status: int, code: str) -> str | None:
    """None when ``answer`` is the error ``code`` with ``status`` in the agreed shape."""
    body = answer.body
    shaped = (
        isinstance(body, dict)
        and isinstance(body.get("error"), dict)
        and isinstance(body["error"].get("code"), str)
        and isinstance(body["error"].get("message"), str)
        and body["error"]["message"] != ""
    )
    if answer.status == status and shaped and body["error"]["code"] == code:
        return None
    return f"wanted {status} {code}, got {answer.status} {body}"


# --- the console script -----------------------------------------------------------------------

GREENPOINTS = Path(sys.executable).with_name("greenpoints")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


async def cli(url: str, *args: str, env: dict[str, str] | None = None) -> Run:
    """``greenpoints ledger ARGS`` on ``url``, with ``env`` added to the environment."""
    env = {**os.environ, **(env or {}), "GREENPOINTS_LEDGER_URL": url}
    proc = await asyncio.create_subprocess_exec(
        str(GREENPOINTS),
        "ledger",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


# --- operations as the system, for setting a scene --------------------------------------------


async def buy(
    service: LedgerService, merchant_id: int, member_id: int, amount: int, key: str
) -> PurchaseOut:
    request = PurchaseRequest(
        merchant_id=merchant_id, member_id=member_id, amount_fen=amount, idempotency_key=key
    )
    return await service.record_purchase(SYSTEM, request)


async def pay_with_code(
    service: LedgerService, merchant_id: int, member_id: int, bill: int, key: str
) -> RedemptionOut:
    """The member shows a fresh code and the till redeems it against ``bill``."""
    code = await service.issue_code(SYSTEM, member_id)
    shown = await service.preview_redemption(
        SYSTEM, PreviewRequest(code=code.numeric_code, merchant_id=merchant_id, bill_fen=bill)
    )
    request = RedeemRequest(
        code=code.numeric_code,
        merchant_id=merchant_id,
        bill_fen=bill,
        vouchers_applied_fen=shown.vouchers_applied_fen,
        pay_fen=shown.pay_fen,
        idempotency_key=key,
    )
    return await service.redeem(SYSTEM, request)
