"""Who may do what, over HTTP, on SQLite and PostgreSQL: every operation of the API × the bot,
merchant and admin keys. Allowed calls succeed; forbidden ones answer 403 ``forbidden`` and change
nothing. The expected answer comes from ``ledger.principal.PERMISSIONS``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp

from ledger.api.operations import OPERATIONS
from ledger.models import RedeemInviteRequest
from ledger.principal import PERMISSIONS, SYSTEM
from ledger.service import LedgerService
from tests.conftest import Served, World
from tests.ledger_support import diff, http, is_error, pay_with_code, snapshot

ROLES = ("bot", "merchant", "admin")
# Operations guarded by another operation's permission.
GUARDED_BY = {
    "members.get": "members.resolve",
    "merchants.nearby": "merchants.read",
    "merchants.get": "merchants.read",
    "merchants.create": "merchants.write",
    "merchants.today": "redemptions.today",
}
STAFF = ("telegram", "777")


async def request_for(
    service: LedgerService, world: World, op: str, role: str, n: int
) -> tuple[dict[str, str], dict[str, Any] | None, dict[str, str]]:
    """(path values, body, query) of a valid call of ``op`` by ``role``; makes what it needs."""
    shop, member = world.merchant_id, world.member_ids[0]
    staff = {"staff": {"channel": STAFF[0], "external_id": STAFF[1]}} if role == "bot" else {}
    path = {"member_id": str(member), "merchant_id": str(shop), "redemption_id": "1"}
    code = ""
    if op == "redemptions.undo":  # a redemption of the shop's to undo
        done = await pay_with_code(service, shop, member, 1000, f"roles-undo-{n:04d}")
        path["redemption_id"] = str(done.redemption_id)
    if op == "staff.revoke":  # a cashier of the shop to revoke
        hired = await service.create_staff_invite(SYSTEM, shop, "cashier")
        target = {"channel": "roles", "external_id": f"cashier-{n}"}
        await service.redeem_staff_invite(SYSTEM, RedeemInviteRequest(code=hired.code, **target))
    if op.startswith("redemptions."):
        code = (await service.issue_code(SYSTEM, member)).numeric_code
    bodies: dict[str, dict[str, Any]] = {
        "members.resolve": {"channel": "roles", "external_id": f"r{n}"},
        "members.update": {"display_name": f"会员{n}"},
        "members.link": {"channel": "roles", "external_id": f"l{n}"},
        "codes.issue": {},
        "purchases.record": {
            "merchant_id": shop,
            "member_id": member,
            "amount_fen": 1000 + n,
            "idempotency_key": f"roles-{n:04d}",
            **staff,
        },
        "redemptions.preview": {"code": code, "merchant_id": shop, "bill_fen": 1000, **staff},
        "redemptions.redeem": {
            "code": code,
            "merchant_id": shop,
            "bill_fen": 1000,
            "vouchers_applied_fen": 0,
            "pay_fen": 1000,
            "idempotency_key": f"roles-r-{n:04d}",
            **staff,
        },
        "merchants.create": {"name": f"新店{n}", "category": "cafe", "lat": 30.2, "lon": 119.7},
        "releases.run": {"date": (dt.date(2030, 1, 1) + dt.timedelta(days=n)).isoformat()},
        "staff.invite": {"merchant_id": shop, **staff},
        "redemptions.undo": {"merchant_id": shop, **staff},
        "staff.revoke": {"channel": "roles", "external_id": f"cashier-{n}", **staff},
        "staff.redeem_invite": {
            "code": (await service.create_staff_invite(SYSTEM, shop)).code,
            "channel": "telegram",
            "external_id": f"new-staff-{n}",
        },
    }
    queries: dict[str, dict[str, str]] = {
        "merchants.nearby": {"lat": "30.2341", "lon": "119.7239"},
        "merchants.today": (
            {"staff_channel": STAFF[0], "staff_external_id": STAFF[1]} if role == "bot" else {}
        ),
        "staff.list": (
            {"staff_channel": STAFF[0], "staff_external_id": STAFF[1]} if role == "bot" else {}
        ),
        "staff.lookup": {"channel": STAFF[0], "external_id": STAFF[1]},
        "events.read": {"limit": "10"},
    }
    return path, bodies.get(op), queries.get(op, {})


async def test_every_operation_by_every_role(
    served: Served, world: World, http_session: aiohttp.ClientSession
) -> None:
    service = served.service
    names = {op.name for op in OPERATIONS}
    guard = {name: GUARDED_BY.get(name, name) for name in names}
    assert set(guard.values()) == set(PERMISSIONS), "an operation or a permission is untested"
    invite = await service.create_staff_invite(SYSTEM, world.merchant_id)
    await service.redeem_staff_invite(
        SYSTEM,
        RedeemInviteRequest(code=invite.code, channel=STAFF[0], external_id=STAFF[1]),
    )
    problems: list[str] = []
    n = 0
    for op in OPERATIONS:
        for role in ROLES:
            n += 1
            allowed = role in PERMISSIONS[guard[op.name]]
            path, body, query = await request_for(service, world, op.name, role, n)
            before = None if allowed else await snapshot(service)
            answer = await http(
                http_session,
                op.method,
                served.url + op.path.format(**path),
                key=served.keys[role],
                json_body=body,
                params=query,
            )
            where = f"{role} {op.name} ({op.method} {op.path})"
            if allowed and answer.status != op.status:
                problems.append(f"{where} is allowed but answered {answer.status} {answer.body}")
            if not allowed:
                wrong = is_error(answer, 403, "forbidden")
                assert before is not None
                changed = diff(before, await snapshot(service))
                if wrong or changed:
                    problems.append(f"{where} should be forbidden: {wrong or ''} {changed}")
    assert n == len(OPERATIONS) * len(ROLES)
    assert not problems, "\n".join(problems)
