"""Acting for a merchant, over HTTP, on SQLite and PostgreSQL: the second table of docs/roles.md.

A merchant key acts for its own merchant only, and the bot acts for a staff member the ledger
itself finds linked to that merchant. Each cell of the table is one real request; a refusal must
carry the documented status and code and change nothing. Expected answers come from the document
(tests/roles_matrix.py), not from ``ledger.principal`` or ``LedgerService._acting_merchant``.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from ledger.api.operations import OPERATIONS
from ledger.models import RedeemInviteRequest
from ledger.principal import SYSTEM
from tests.conftest import Served, World
from tests.ledger_support import diff, http, is_error, snapshot
from tests.roles_matrix import ACTING

OWN_STAFF = ("telegram", "own-cashier")
OTHER_STAFF = ("telegram", "other-cashier")
# column -> (key's role, target merchant is the key's own, staff named by the bot)
COLUMNS: dict[str, tuple[str, bool, tuple[str, str] | None]] = {
    "merchant key, own": ("merchant", True, None),
    "merchant key, other": ("merchant", False, None),
    "bot + staff of it": ("bot", True, OWN_STAFF),
    "bot + staff of another": ("bot", True, OTHER_STAFF),
    "bot, no staff named": ("bot", True, None),
}


async def _link(served: Served, merchant_id: int, who: tuple[str, str]) -> None:
    invite = await served.service.create_staff_invite(SYSTEM, merchant_id)
    await served.service.redeem_staff_invite(
        SYSTEM, RedeemInviteRequest(code=invite.code, channel=who[0], external_id=who[1])
    )


async def _request(
    served: Served, world: World, route: str, target: int, staff: tuple[str, str] | None, n: int
) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
    """(method, url, body, query) of an otherwise valid call of ``route`` for ``target``."""
    method, path = route.split(" ", 1)
    named = {"staff": {"channel": staff[0], "external_id": staff[1]}} if staff else {}
    body: dict[str, Any] | None = None
    query: dict[str, str] = {}
    member = world.member_ids[n % len(world.member_ids)]
    if path == "/v1/purchases":
        body = {"merchant_id": target, "member_id": member, "amount_fen": 5_000 + n,
                "idempotency_key": f"acting-{n}", **named}
    elif path.startswith("/v1/redemptions"):
        code = (await served.service.issue_code(SYSTEM, member)).numeric_code
        body = {"code": code, "merchant_id": target, "bill_fen": 5_000, **named}
        if path == "/v1/redemptions":  # the figures read out: no vouchers in this world
            body.update(idempotency_key=f"acting-r-{n}", vouchers_applied_fen=0, pay_fen=5_000)
    elif path.endswith(("/today", "/statement")):
        if staff:
            query = {"staff_channel": staff[0], "staff_external_id": staff[1]}
    elif path == "/v1/staff-invites":
        body = {"merchant_id": target, **named}
    elif path.endswith("/stores") and method == "POST":  # the staff named is an owner
        body = {"name": f"分店{n}", "lat": 30.25, "lon": 120.17, **named}
    elif path.endswith("/stores"):
        if staff:
            query = {"staff_channel": staff[0], "staff_external_id": staff[1]}
    else:
        raise AssertionError(f"docs/roles.md names {route}; teach this test to call it")
    url = served.url + path.format(merchant_id=target)
    return method, url, body, query


async def test_acting_for_a_merchant(
    served: Served, world: World, http_session: aiohttp.ClientSession
) -> None:
    await _link(served, world.merchant_id, OWN_STAFF)
    await _link(served, world.other_merchant_id, OTHER_STAFF)
    status = {f"{op.method} {op.path}": op.status for op in OPERATIONS}
    problems: list[str] = []
    checked = 0
    for n, (route, cells) in enumerate(sorted(ACTING.items())):
        assert set(cells) == set(COLUMNS), cells
        for column, expected in cells.items():
            if expected == "-":
                continue
            role, own, staff = COLUMNS[column]
            target = world.merchant_id if own else world.other_merchant_id
            method, url, body, query = await _request(
                served, world, route, target, staff, 100 * n + len(problems) + checked
            )
            before = None if expected == "yes" else await snapshot(served.service)
            answer = await http(
                http_session, method, url, key=served.keys[role], json_body=body, params=query
            )
            checked += 1
            where = f"{route} by {column}"
            if expected == "yes":
                if answer.status != status[route]:
                    problems.append(f"{where}: wanted {status[route]}, got {answer.status} "
                                    f"{answer.body}")
                continue
            code, error = expected.split(" ", 1)
            wrong = is_error(answer, int(code), error)
            assert before is not None
            changed = diff(before, await snapshot(served.service))
            if wrong or changed:
                problems.append(f"{where}: {wrong or ''} {changed}")
            elif code == "403":  # the refusal names the merchant, for the till's operator
                error_body = answer.body["error"]
                if error_body.get("details") != {"merchant_id": target} or not any(
                    word in error_body["message"] for word in ("another merchant", "not staff")
                ):
                    problems.append(f"{where}: refusal does not say why: {error_body}")
    assert checked == sum(v != "-" for cells in ACTING.values() for v in cells.values()) >= 20
    assert not problems, "\n".join(problems)
