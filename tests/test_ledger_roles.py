"""Who may do what, over HTTP, on SQLite and PostgreSQL: every operation of the API × the bot,
merchant and admin keys, no key and a key the ledger never issued. Allowed calls succeed;
forbidden ones answer 403 ``forbidden`` (401 ``unauthorized`` without a valid key) and change
nothing. The expected answer comes from docs/roles.md (tests/roles_matrix.py), written apart from
``ledger.principal.PERMISSIONS`` (issue 15: a merchant key granted ``events.read`` passed)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp

from ledger import apikeys
from ledger.api.operations import OPERATIONS
from ledger.models import RedeemInviteRequest
from ledger.principal import SYSTEM
from ledger.service import LedgerService
from tests.conftest import Served, World
from tests.ledger_support import buy, diff, http, is_error, pay_with_code, snapshot
from tests.roles_matrix import ALLOWED

ROLES = ("bot", "merchant", "admin", "anonymous", "forged")
FORGED_KEY = "gp_admin_" + "x" * 32  # well formed, never issued
STAFF = ("telegram", "777")


async def request_for(
    service: LedgerService, world: World, op: str, role: str, n: int
) -> tuple[dict[str, str], dict[str, Any] | None, dict[str, str]]:
    """(path values, body, query) of a valid call of ``op`` by ``role``; makes what it needs."""
    shop, member = world.merchant_id, world.member_ids[0]
    staff = {"staff": {"channel": STAFF[0], "external_id": STAFF[1]}} if role == "bot" else {}
    path = {"member_id": str(member), "merchant_id": str(shop), "redemption_id": "1"}
    path["store_id"] = str((await service.list_stores(SYSTEM, shop)).stores[0].id)
    if op == "keys.revoke":  # a key of its own each time, so no caller loses theirs
        path["key_id"] = str(await apikeys.key_id(
            service.ctx, await apikeys.create(service.ctx, "bot", None, f"roles {n}")))
    code = ""
    if op == "redemptions.undo":  # a redemption of the shop's to undo
        done = await pay_with_code(service, shop, member, 1000, f"roles-undo-{n:04d}")
        path["redemption_id"] = str(done.redemption_id)
    if op == "staff.revoke":  # a cashier of the shop to revoke
        hired = await service.create_staff_invite(SYSTEM, shop, "cashier")
        target = {"channel": "roles", "external_id": f"cashier-{n}"}
        await service.redeem_staff_invite(SYSTEM, RedeemInviteRequest(code=hired.code, **target))
    if op == "purchases.refund":  # a purchase of the shop's, inside a hold, to refund
        service.ctx.rules = service.ctx.rules.model_copy(update={"points_hold_days": 7})
        bought = await buy(service, shop, member, 1000, f"roles-refund-{n:04d}")
        path["purchase_id"] = str(bought.purchase_id)
        if role == "bot":  # the bot refunds for an owner only
            owner = await service.create_staff_invite(SYSTEM, shop, "owner")
            await service.redeem_staff_invite(
                SYSTEM, RedeemInviteRequest(code=owner.code, channel="roles", external_id="own")
            )
            staff = {"staff": {"channel": "roles", "external_id": "own"}}
    if op.startswith("redemptions."):
        code = (await service.issue_code(SYSTEM, member)).numeric_code
    bodies: dict[str, dict[str, Any]] = {
        "members.resolve": {"channel": "roles", "external_id": f"r{n}"},
        "members.update": {"display_name": f"会员{n}"},
        "members.link": {"channel": "roles", "external_id": f"l{n}"},
        "identities.attach": {
            "member_id": member,
            "channel": "roles",
            "external_id": f"a{n}",
            "idempotency_key": f"roles-a-{n:04d}",
        },
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
        # Today's, every time: a date after today is refused (issue 12), a second run reports.
        "releases.run": {"date": service.ctx.today().isoformat()},
        "staff.invite": {"merchant_id": shop, **staff},
        "stores.add": {"name": f"分店{n}", "lat": 30.2341, "lon": 119.7239, **staff},
        "redemptions.undo": {"merchant_id": shop, **staff},
        "purchases.refund": {
            "merchant_id": shop,
            "amount_fen": 10,
            "idempotency_key": f"roles-refund-{n:04d}",
            **staff,
        },
        "staff.revoke": {"channel": "roles", "external_id": f"cashier-{n}", **staff},
        "transparency.publish": {"date": service.ctx.today().isoformat()},
        # Yesterday has ended; paying it again (another key) answers with its payout.
        "merchants.payout": {
            "period": (service.ctx.today() - dt.timedelta(days=1)).isoformat(),
            "idempotency_key": f"roles-pay-{n:04d}",
        },
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
        "merchants.statement": (
            {"staff_channel": STAFF[0], "staff_external_id": STAFF[1]} if role == "bot" else {}
        ),
        "staff.list": (
            {"staff_channel": STAFF[0], "staff_external_id": STAFF[1]} if role == "bot" else {}
        ),
        "stores.list": (
            {"staff_channel": STAFF[0], "staff_external_id": STAFF[1]} if role == "bot" else {}
        ),
        "staff.lookup": {"channel": STAFF[0], "external_id": STAFF[1]},
        "events.read": {"limit": "10"},
        "circle.read": {"lat": "30.2341", "lon": "119.7239"},
    }
    return path, bodies.get(op), queries.get(op, {})


async def test_every_operation_by_every_role(
    served: Served, world: World, http_session: aiohttp.ClientSession
) -> None:
    service = served.service
    routes = {f"{op.method} {op.path}" for op in OPERATIONS}
    documented = set(ALLOWED) - {"GET /healthz"}
    assert routes == documented, f"docs/roles.md and the API differ: {routes ^ documented}"
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
            who = "anonymous" if role == "forged" else role
            allowed = ALLOWED[f"{op.method} {op.path}"][who]
            refusal = (403, "forbidden") if who != "anonymous" else (401, "unauthorized")
            path, body, query = await request_for(service, world, op.name, role, n)
            before = None if allowed else await snapshot(service)
            answer = await http(
                http_session,
                op.method,
                served.url + op.path.format(**path),
                key=served.keys.get(role, FORGED_KEY if role == "forged" else None),
                json_body=body,
                params=query,
            )
            where = f"{role} {op.name} ({op.method} {op.path})"
            if allowed and answer.status != op.status:
                problems.append(f"{where} is allowed but answered {answer.status} {answer.body}")
            if not allowed:
                wrong = is_error(answer, *refusal)
                assert before is not None
                changed = diff(before, await snapshot(service))
                if wrong or changed:
                    problems.append(f"{where} should be forbidden: {wrong or ''} {changed}")
                elif who != "anonymous":  # a 403 says which operation and who was refused
                    error = answer.body["error"]
                    named = error.get("details", {}).get("operation")
                    says_who = f"role '{who}'" in error["message"]
                    if not (isinstance(named, str) and named and says_who):
                        problems.append(f"{where}: the refusal does not say why: {error}")
    assert n == len(OPERATIONS) * len(ROLES)
    assert not problems, "\n".join(problems)
