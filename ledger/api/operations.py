"""Every ledger operation once: its path, its input models, its role check and its answer.

The aiohttp app registers a route per entry, the OpenAPI document is generated from the same
entries, and the in-process client calls ``invoke`` with the same JSON a remote client would
send — so all three accept exactly the same inputs and answer exactly the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ledger import models as m
from ledger import statements
from ledger.api import wire
from ledger.errors import InvalidRequest, LedgerError
from ledger.principal import Principal
from ledger.service import LedgerService

MAX_ID = 2**62


def _iso_date(value: Any) -> Any:
    """A query-string date is ``YYYY-MM-DD``, as the document's ``format: date`` says; lax pydantic
    would also read ``0`` or ``1700000000`` as a Unix time and answer for a day nobody asked."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("a date is written YYYY-MM-DD")
    return value


QueryDate = Annotated[dt.date, BeforeValidator(_iso_date)]


class Query(BaseModel):
    """Query strings arrive as text, so these models coerce; unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BalanceQuery(Query):
    limit: Annotated[int, Field(ge=0, le=50)] = 5
    before: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None


class NearbyQuery(Query):
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
    radius_m: Annotated[int, Field(ge=1, le=200_000)] | None = None
    category: Annotated[str, Field(max_length=40, pattern=m.NO_NUL)] | None = None
    limit: Annotated[int, Field(ge=1, le=50)] = 10
    offset: Annotated[int, Field(ge=0, le=10_000)] = 0


class EventsQuery(Query):
    after: Annotated[int, Field(ge=0, le=MAX_ID)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class CircleQuery(Query):
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class PublicPoolQuery(Query):
    days: Annotated[int, Field(ge=1, le=3660)] = 90


class StaffQuery(Query):
    channel: m.Channel
    external_id: m.ExternalId
    include_revoked: bool = False


class StaffListQuery(Query):
    staff_channel: m.Channel | None = None
    staff_external_id: m.ExternalId | None = None
    include_revoked: bool = False


class TodayQuery(Query):
    date: QueryDate | None = None
    staff_channel: m.Channel | None = None
    staff_external_id: m.ExternalId | None = None
    store_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None


class StoresQuery(Query):
    staff_channel: m.Channel | None = None
    staff_external_id: m.ExternalId | None = None


class StatementQuery(Query):
    """``period`` (a month ``2026-11`` or a day), or ``from`` and ``to`` (local days, ``to``
    defaulting to ``from``); none of them: this month so far. ``format=csv`` (or ``Accept:
    text/csv``) answers the statement as CSV."""

    period: m.Period | None = None
    from_: Annotated[QueryDate | None, Field(alias="from")] = None
    to: QueryDate | None = None
    format: Literal["json", "csv"] = "json"
    staff_channel: m.Channel | None = None
    staff_external_id: m.ExternalId | None = None


class UnusualQuery(Query):
    date: QueryDate | None = None


class StaffLookupOut(m.Out):
    staff: m.StaffOut | None


class KeyRevokedOut(m.Out):
    key_id: int
    revoked_at: m.Timestamp
    already_revoked: bool  # revoked before this call; revoked_at is the first revocation's


class Empty(m.Strict):
    pass


@dataclass(frozen=True)
class Args:
    path: dict[str, int]
    query: Any
    body: Any


Handler = Callable[[LedgerService, Principal, Args], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: str
    summary: str
    response: type[BaseModel]
    call: Handler
    body: type[BaseModel] | None = None
    query: type[Query] | None = None
    status: int = 200
    public: bool = False  # answered without an API key (the public record, issue 13)
    # Answers ``format=csv`` (or ``Accept: text/csv``) with this text instead of JSON.
    csv: Callable[[Any], str] | None = None

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


async def _staff_lookup(s: LedgerService, p: Principal, a: Args) -> StaffLookupOut:
    q = a.query
    return StaffLookupOut(
        staff=await s.staff_lookup(p, q.channel, q.external_id, q.include_revoked)
    )


def _acting_staff(q: Any) -> m.Identity | None:
    """The staff member a bot names in a query string (both parts, or none)."""
    if q.staff_channel and q.staff_external_id:
        return m.Identity(channel=q.staff_channel, external_id=q.staff_external_id)
    return None


async def _staff_list(s: LedgerService, p: Principal, a: Args) -> m.StaffListOut:
    q = a.query
    return await s.list_staff(p, a.path["merchant_id"], _acting_staff(q), q.include_revoked)


async def _today(s: LedgerService, p: Principal, a: Args) -> m.TodayOut:
    q = a.query
    staff = (
        m.Identity(channel=q.staff_channel, external_id=q.staff_external_id)
        if q.staff_channel and q.staff_external_id
        else None
    )
    return await s.today(p, a.path["merchant_id"], staff, q.date, q.store_id)


async def _stores_list(s: LedgerService, p: Principal, a: Args) -> m.StoreListOut:
    return await s.list_stores(p, a.path["merchant_id"], _acting_staff(a.query))


async def _stores_add(s: LedgerService, p: Principal, a: Args) -> m.StoreOut:
    store = m.StoreIn.model_validate(a.body.model_dump(exclude={"staff"}))
    return await s.add_store(p, a.path["merchant_id"], store, a.body.staff)


async def _statement(s: LedgerService, p: Principal, a: Args) -> m.StatementOut:
    q = a.query
    if q.period is not None and (q.from_ is not None or q.to is not None):
        raise InvalidRequest("give a period, or from and to, not both")
    if q.period is not None:
        first, last = statements.parse_period(q.period)
        label: str | None = q.period
    elif q.from_ is not None:
        first, last, label = q.from_, q.to or q.from_, None
    elif q.to is not None:
        raise InvalidRequest("to needs from")
    else:  # this month so far
        last = s.ctx.today()
        first, label = last.replace(day=1), None
    return await s.statement(p, a.path["merchant_id"], first, last, _acting_staff(q), label)


async def _nearby(s: LedgerService, p: Principal, a: Args) -> m.NearbyOut:
    q = a.query
    return await s.nearby(p, q.lat, q.lon, q.radius_m, q.category, q.limit, q.offset)


async def _revoke_key(s: LedgerService, p: Principal, a: Args) -> KeyRevokedOut:
    done = await s.revoke_key(p, a.path["key_id"])
    return KeyRevokedOut(key_id=done.key_id, revoked_at=done.revoked_at,
                         already_revoked=done.already)


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "members.resolve",
        "POST",
        "/v1/members/resolve",
        "Find the member behind a chat identity, creating it on first contact.",
        m.MemberOut,
        lambda s, p, a: s.resolve_member(p, a.body),
        body=m.ResolveMemberRequest,
    ),
    Operation(
        "members.get",
        "GET",
        "/v1/members/{member_id}",
        "A member's profile.",
        m.MemberOut,
        lambda s, p, a: s.get_member(p, a.path["member_id"]),
    ),
    Operation(
        "members.update",
        "PATCH",
        "/v1/members/{member_id}",
        "Change a member's preferred locale or display name.",
        m.MemberOut,
        lambda s, p, a: s.update_member(p, a.path["member_id"], a.body),
        body=m.UpdateMemberRequest,
    ),
    Operation(
        "members.link",
        "POST",
        "/v1/members/{member_id}/identities",
        "Link another channel's identity to a member.",
        m.MemberOut,
        lambda s, p, a: s.link_identity(p, a.path["member_id"], a.body),
        body=m.LinkIdentityRequest,
    ),
    Operation(
        "identities.attach",
        "POST",
        "/v1/identity-links",
        "Attach a chat identity to a member for good (a one-time link code, issue 10): added, or "
        "moved off the unused member its first contact created; keyed by idempotency_key.",
        m.IdentityLinkOut,
        lambda s, p, a: s.attach_identity(p, a.body),
        body=m.AttachIdentityRequest,
    ),
    Operation(
        "members.balance",
        "GET",
        "/v1/members/{member_id}/balance",
        "Points, their value at today's point price, vouchers and recent activity.",
        m.BalanceOut,
        lambda s, p, a: s.balance(p, a.path["member_id"], a.query.limit, a.query.before),
        query=BalanceQuery,
    ),
    Operation(
        "codes.issue",
        "POST",
        "/v1/members/{member_id}/redemption-codes",
        "Issue a single-use redemption code; the member's previous live code stops working.",
        m.CodeOut,
        lambda s, p, a: s.issue_code(p, a.path["member_id"]),
        body=Empty,
        status=201,
    ),
    Operation(
        "purchases.record",
        "POST",
        "/v1/purchases",
        "Record a purchase at a merchant: concession into the pool, points minted.",
        m.PurchaseOut,
        lambda s, p, a: s.record_purchase(p, a.body),
        body=m.PurchaseRequest,
        status=201,
    ),
    Operation(
        "purchases.refund",
        "POST",
        "/v1/purchases/{purchase_id}/refunds",
        "Refund part or all of a purchase inside its points' hold: the concession back out of "
        "the pool, the points minted on the refunded part taken back (floor rule, "
        "ledger/refunds.py). 409 refund_refused with details.reason refund_after_hold, "
        "over_refund, redemption_undone or points_already_used.",
        m.RefundOut,
        lambda s, p, a: s.refund_purchase(p, a.path["purchase_id"], a.body),
        body=m.RefundRequest,
        status=201,
    ),
    Operation(
        "redemptions.preview",
        "POST",
        "/v1/redemptions/preview",
        "What redeeming a code against a bill would do, without consuming the code.",
        m.PreviewOut,
        lambda s, p, a: s.preview_redemption(p, a.body),
        body=m.PreviewRequest,
    ),
    Operation(
        "redemptions.redeem",
        "POST",
        "/v1/redemptions",
        "Redeem a code against a bill, exactly once per code.",
        m.RedemptionOut,
        lambda s, p, a: s.redeem(p, a.body),
        body=m.RedeemRequest,
        status=201,
    ),
    Operation(
        "redemptions.undo",
        "POST",
        "/v1/redemptions/{redemption_id}/undo",
        "Undo a redemption within its window (撤销核销); a second undo answers the first.",
        m.UndoOut,
        lambda s, p, a: s.undo_redemption(p, a.path["redemption_id"], a.body),
        body=m.UndoRedemptionRequest,
    ),
    Operation(
        "merchants.nearby",
        "GET",
        "/v1/merchants/nearby",
        "Alliance merchants within a radius, nearest first.",
        m.NearbyOut,
        _nearby,
        query=NearbyQuery,
    ),
    Operation(
        "merchants.get",
        "GET",
        "/v1/merchants/{merchant_id}",
        "One merchant.",
        m.MerchantOut,
        lambda s, p, a: s.get_merchant(p, a.path["merchant_id"]),
    ),
    Operation(
        "merchants.create",
        "POST",
        "/v1/merchants",
        "Add a merchant to the directory.",
        m.MerchantOut,
        lambda s, p, a: s.create_merchant(p, a.body),
        body=m.MerchantIn,
        status=201,
    ),
    Operation(
        "merchants.today",
        "GET",
        "/v1/merchants/{merchant_id}/today",
        "A merchant's redemptions on one local day (today by default).",
        m.TodayOut,
        _today,
        query=TodayQuery,
    ),
    Operation(
        "merchants.statement",
        "GET",
        "/v1/merchants/{merchant_id}/statement",
        "A merchant's statement (对账单) for local days: purchases and their concessions, "
        "vouchers accepted, points released into settlement, undos, the net due either way, "
        "carried forward until paid, and the payout status. JSON, or CSV with format=csv or "
        "Accept: text/csv. Owners (through the bot), the merchant's key, admins.",
        m.StatementOut,
        _statement,
        query=StatementQuery,
        csv=statements.to_csv,
    ),
    Operation(
        "merchants.payout",
        "POST",
        "/v1/merchants/{merchant_id}/payouts",
        "Record that the merchant's settlement through the end of a period was paid (admins). "
        "The amount is the ledger's; the same period again answers with its payout; 409 "
        "payout_refused for a period not over or before a paid one.",
        m.PayoutOut,
        lambda s, p, a: s.payout(p, a.path["merchant_id"], a.body),
        body=m.PayoutRequest,
        status=201,
    ),
    Operation(
        "stores.get",
        "GET",
        "/v1/stores/{store_id}",
        "One store (门店) with its merchant's name, as the nearby list shows it.",
        m.StoreOut,
        lambda s, p, a: s.get_store(p, a.path["store_id"]),
    ),
    Operation(
        "stores.add",
        "POST",
        "/v1/merchants/{merchant_id}/stores",
        "Add a store (门店) to a merchant: name, address, place, hours; owners only.",
        m.StoreOut,
        _stores_add,
        body=m.StoreRequest,
        status=201,
    ),
    Operation(
        "stores.list",
        "GET",
        "/v1/merchants/{merchant_id}/stores",
        "A merchant's stores, oldest (its own place) first; owners only.",
        m.StoreListOut,
        _stores_list,
        query=StoresQuery,
    ),
    Operation(
        "events.read",
        "GET",
        "/v1/events",
        "The event feed after a cursor, in order.",
        m.EventsPage,
        lambda s, p, a: s.events(p, a.query.after, a.query.limit),
        query=EventsQuery,
    ),
    Operation(
        "releases.run",
        "POST",
        "/v1/releases",
        "Run (or resume, or report) a day's voucher release, expiry and expiring notices. "
        "409 release_date_refused for a date after the local today, or a past date that is "
        "neither a day missed since the last finished release nor an unfinished release.",
        m.ReleaseOut,
        lambda s, p, a: s.release(p, a.body.date),
        body=m.ReleaseRequest,
    ),
    Operation(
        "staff.invite",
        "POST",
        "/v1/staff-invites",
        "Create a one-time staff invite.",
        m.InviteOut,
        lambda s, p, a: s.create_staff_invite(
            p, a.body.merchant_id, a.body.role, a.body.staff, a.body.store_id
        ),
        body=m.StaffInviteRequest,
        status=201,
    ),
    Operation(
        "staff.redeem_invite",
        "POST",
        "/v1/staff-invites/redeem",
        "Link an identity to a merchant as staff with an invite.",
        m.StaffOut,
        lambda s, p, a: s.redeem_staff_invite(p, a.body),
        body=m.RedeemInviteRequest,
    ),
    Operation(
        "staff.lookup",
        "GET",
        "/v1/staff",
        "Which merchant, if any, an identity is staff of.",
        StaffLookupOut,
        _staff_lookup,
        query=StaffQuery,
    ),
    Operation(
        "staff.list",
        "GET",
        "/v1/merchants/{merchant_id}/staff",
        "A merchant's owners and cashiers (revoked ones on request); owners only.",
        m.StaffListOut,
        _staff_list,
        query=StaffListQuery,
    ),
    Operation(
        "staff.revoke",
        "POST",
        "/v1/merchants/{merchant_id}/staff/revoke",
        "Revoke a staff member at once in every ledger process; again answers the first time.",
        m.StaffMemberOut,
        lambda s, p, a: s.revoke_staff(p, a.path["merchant_id"], a.body),
        body=m.RevokeStaffRequest,
    ),
    Operation(
        "stats.read",
        "GET",
        "/v1/stats",
        "Alliance-wide figures.",
        m.StatsOut,
        lambda s, p, a: s.stats(p),
    ),
    Operation(
        "alerts.unusual_volume",
        "GET",
        "/v1/alerts/unusual-volume",
        "Merchants whose purchase volume on a local day (default yesterday) was above a floor "
        "and far above the median of their own trailing days (issue 11).",
        m.UnusualVolumeOut,
        lambda s, p, a: s.unusual_volume(p, a.query.date),
        query=UnusualQuery,
    ),
    Operation(
        "keys.revoke",
        "DELETE",
        "/v1/api-keys/{key_id}",
        "Revoke an API key: every ledger process refuses it from the next request on.",
        KeyRevokedOut,
        _revoke_key,
    ),
    Operation(
        "transparency.pool",
        "GET",
        "/v1/public/pool",
        "Public, no key: the pool, points in circulation and price, with each day's record "
        "and the journal heads published in it.",
        m.PublicPoolOut,
        lambda s, p, a: s.public_pool(p, a.query.days),
        query=PublicPoolQuery,
        public=True,
    ),
    Operation(
        "circle.read",
        "GET",
        "/v1/circle",
        "The 15-minute convenience circle around a place: each everyday need's nearest "
        "alliance merchant within the walk, and the gaps.",
        m.CircleOut,
        lambda s, p, a: s.circle(p, a.query.lat, a.query.lon),
        query=CircleQuery,
    ),
    Operation(
        "transparency.publish",
        "POST",
        "/v1/transparency/records",
        "Write a day's public record now (the release does this every day); a second call for "
        "the day returns the first record.",
        m.PublicDay,
        lambda s, p, a: s.publish(p, a.body.date),
        body=m.PublishRequest,
    ),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}


def _invalid(exc: ValidationError, where: str) -> InvalidRequest:
    problems = [
        {"field": ".".join(str(x) for x in e["loc"]) or where, "problem": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    first = problems[0]
    return InvalidRequest(f"{where} {first['field']}: {first['problem']}", problems=problems)


def parse_args(
    op: Operation, path: Mapping[str, str], query: Mapping[str, str], body: bytes | None
) -> Args:
    ids = {name: wire.path_id(name, path.get(name, "")) for name in op.path_params}
    query = wire.check_query(query.items())
    try:
        q = op.query.model_validate(dict(query)) if op.query else None
    except ValidationError as exc:
        raise _invalid(exc, "query") from None
    if op.query is None and query:
        raise InvalidRequest("this operation takes no query parameters")
    parsed_body = None
    if op.body is not None:
        wire.check_body(body or b"{}")
        try:
            parsed_body = op.body.model_validate_json(body or b"{}")
        except ValidationError as exc:
            raise _invalid(exc, "body") from None
    return Args(ids, q, parsed_body)


async def invoke(
    service: LedgerService,
    principal: Principal,
    name: str,
    path: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, Any]:
    """Run one operation from its wire form; answers (status, JSON body), errors included;
    the body is CSV text instead when the operation has a CSV form and ``format=csv`` asked."""
    op = BY_NAME[name]
    try:
        args = parse_args(op, path or {}, query or {}, body)
        result = await op.call(service, principal, args)
    except LedgerError as exc:
        return exc.status, exc.to_json()
    if op.csv is not None and getattr(args.query, "format", "json") == "csv":
        return op.status, op.csv(result)  # text: the HTTP layer sends it as text/csv
    return op.status, result.model_dump(mode="json")


def encode(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
