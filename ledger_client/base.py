"""The ledger client's interface, written once over a four-argument transport call.

Transports (HTTP, in-process) only move JSON; every typed method below is shared, so both
implementations build the same requests and read the same answers.
"""

from __future__ import annotations

import abc
import datetime as dt
from typing import Any, TypeVar

from pydantic import BaseModel

from ledger_client import models as m
from ledger_client.errors import from_response

T = TypeVar("T", bound=BaseModel)

# Operation name -> (HTTP method, path, whether a retry can never apply it twice).
ROUTES: dict[str, tuple[str, str, bool]] = {
    "members.resolve": ("POST", "/v1/members/resolve", True),
    "members.get": ("GET", "/v1/members/{member_id}", True),
    "members.update": ("PATCH", "/v1/members/{member_id}", True),
    "members.link": ("POST", "/v1/members/{member_id}/identities", True),
    "identities.attach": ("POST", "/v1/identity-links", True),
    "members.balance": ("GET", "/v1/members/{member_id}/balance", True),
    "codes.issue": ("POST", "/v1/members/{member_id}/redemption-codes", False),
    "purchases.record": ("POST", "/v1/purchases", True),
    "redemptions.preview": ("POST", "/v1/redemptions/preview", True),
    "redemptions.redeem": ("POST", "/v1/redemptions", True),
    "redemptions.undo": ("POST", "/v1/redemptions/{redemption_id}/undo", True),
    "purchases.refund": ("POST", "/v1/purchases/{purchase_id}/refunds", True),  # keyed
    "merchants.nearby": ("GET", "/v1/merchants/nearby", True),
    "merchants.get": ("GET", "/v1/merchants/{merchant_id}", True),
    "merchants.create": ("POST", "/v1/merchants", False),
    "merchants.today": ("GET", "/v1/merchants/{merchant_id}/today", True),
    "merchants.statement": ("GET", "/v1/merchants/{merchant_id}/statement", True),
    # Keyed by its idempotency key, and the same period again answers with its payout.
    "merchants.payout": ("POST", "/v1/merchants/{merchant_id}/payouts", True),
    "events.read": ("GET", "/v1/events", True),
    "releases.run": ("POST", "/v1/releases", True),
    # Not retried: a retry of an add that went through is refused (the name is taken).
    "stores.add": ("POST", "/v1/merchants/{merchant_id}/stores", False),
    "stores.list": ("GET", "/v1/merchants/{merchant_id}/stores", True),
    "stores.get": ("GET", "/v1/stores/{store_id}", True),
    "staff.invite": ("POST", "/v1/staff-invites", False),
    "staff.redeem_invite": ("POST", "/v1/staff-invites/redeem", False),
    "staff.lookup": ("GET", "/v1/staff", True),
    "staff.list": ("GET", "/v1/merchants/{merchant_id}/staff", True),
    "staff.revoke": ("POST", "/v1/merchants/{merchant_id}/staff/revoke", True),
    "stats.read": ("GET", "/v1/stats", True),
    "alerts.unusual_volume": ("GET", "/v1/alerts/unusual-volume", True),
    "keys.revoke": ("DELETE", "/v1/api-keys/{key_id}", True),  # revoking twice changes nothing
    "transparency.pool": ("GET", "/v1/public/pool", True),
    "circle.read": ("GET", "/v1/circle", True),
    "transparency.publish": ("POST", "/v1/transparency/records", True),
}

Staff = tuple[str, str]  # (channel, external id) of the staff member acting


def _staff(staff: Staff | None) -> dict[str, Any]:
    return {"staff": {"channel": staff[0], "external_id": staff[1]}} if staff else {}


def _clean(query: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in query.items() if v is not None}


class LedgerClient(abc.ABC):
    """Typed calls to the ledger. Every method raises a ``LedgerClientError`` subclass on refusal
    and ``Unavailable`` when the ledger cannot be reached in time."""

    @abc.abstractmethod
    async def _call(
        self,
        op: str,
        path: dict[str, int],
        query: dict[str, str],
        body: dict[str, Any] | None,
    ) -> tuple[int, Any]:
        """Send one operation; answers (HTTP-style status, decoded JSON)."""

    async def close(self) -> None:  # noqa: B027 - transports without resources need nothing
        """Release connections."""

    async def __aenter__(self) -> LedgerClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _do(
        self,
        model: type[T],
        op: str,
        path: dict[str, int] | None = None,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> T:
        status, payload = await self._call(op, path or {}, _clean(query or {}), body)
        if status >= 400:
            raise from_response(status, payload)
        return model.model_validate(payload)

    # members
    async def resolve_member(
        self,
        channel: str,
        external_id: str,
        locale: str = "zh_Hans",
        display_name: str | None = None,
    ) -> m.Member:
        body = {
            "channel": channel,
            "external_id": external_id,
            "locale": locale,
            "display_name": display_name[:64] if display_name else None,
        }
        return await self._do(m.Member, "members.resolve", body=body)

    async def get_member(self, member_id: int) -> m.Member:
        return await self._do(m.Member, "members.get", {"member_id": member_id})

    async def update_member(
        self, member_id: int, locale: str | None = None, display_name: str | None = None
    ) -> m.Member:
        body = {k: v for k, v in (("locale", locale), ("display_name", display_name)) if v}
        return await self._do(m.Member, "members.update", {"member_id": member_id}, body=body)

    async def link_identity(self, member_id: int, channel: str, external_id: str) -> m.Member:
        return await self._do(
            m.Member,
            "members.link",
            {"member_id": member_id},
            body={"channel": channel, "external_id": external_id},
        )

    async def attach_identity(
        self, member_id: int, channel: str, external_id: str, idempotency_key: str
    ) -> m.IdentityLink:
        """Attach the identity to the member for good (issue 10's link codes): added, or moved
        off the unused member its first contact created. Raises ``IdentityInUse`` when that
        member has points, vouchers or history (members are never merged), ``MemberNotFound``."""
        body = {
            "member_id": member_id,
            "channel": channel,
            "external_id": external_id,
            "idempotency_key": idempotency_key,
        }
        return await self._do(m.IdentityLink, "identities.attach", body=body)

    async def balance(self, member_id: int, limit: int = 5, before: int | None = None) -> m.Balance:
        return await self._do(
            m.Balance,
            "members.balance",
            {"member_id": member_id},
            {"limit": limit, "before": before},
        )

    # purchases and redemption
    async def record_purchase(
        self,
        merchant_id: int,
        member_id: int | None,
        amount_fen: int,
        idempotency_key: str,
        green_tags: list[str] | None = None,
        staff: Staff | None = None,
        code: str | None = None,
    ) -> m.PurchaseResult:
        """Record a purchase for the member whose ``code`` (scanned or typed) the till read;
        the code is spent. A bare ``member_id`` is for the system only (issue 11); anyone else
        is refused ``Forbidden`` (``details["reason"]`` ``member_code_required``)."""
        member: dict[str, Any] = {"code": code} if code is not None else {"member_id": member_id}
        body = {
            "merchant_id": merchant_id,
            **member,
            "amount_fen": amount_fen,
            "green_tags": green_tags or [],
            "idempotency_key": idempotency_key,
            **_staff(staff),
        }
        return await self._do(m.PurchaseResult, "purchases.record", body=body)

    async def issue_code(self, member_id: int) -> m.RedemptionCode:
        return await self._do(m.RedemptionCode, "codes.issue", {"member_id": member_id}, body={})

    async def preview_redemption(
        self, code: str, merchant_id: int, bill_fen: int, staff: Staff | None = None
    ) -> m.Preview:
        body = {"code": code, "merchant_id": merchant_id, "bill_fen": bill_fen, **_staff(staff)}
        return await self._do(m.Preview, "redemptions.preview", body=body)

    async def redeem(
        self,
        code: str,
        merchant_id: int,
        bill_fen: int,
        idempotency_key: str,
        staff: Staff | None = None,
        *,
        vouchers_applied_fen: int,
        pay_fen: int,
    ) -> m.Receipt:
        """Book the redemption the cashier previewed: ``vouchers_applied_fen`` and ``pay_fen``
        are that preview's figures. Raises ``AmountsChanged`` (fresh figures in its properties)
        when the ledger would book others, e.g. a release or an expiry came in between."""
        body = {
            "code": code,
            "merchant_id": merchant_id,
            "bill_fen": bill_fen,
            "vouchers_applied_fen": vouchers_applied_fen,
            "pay_fen": pay_fen,
            "idempotency_key": idempotency_key,
            **_staff(staff),
        }
        return await self._do(m.Receipt, "redemptions.redeem", body=body)

    async def undo_redemption(
        self, redemption_id: int, merchant_id: int, staff: Staff | None = None
    ) -> m.Undo:
        """Undo a redemption (撤销核销); asking again answers the first undo. Raises
        ``UndoRefused`` (``reason`` in its details) and ``NotOwner``/``StaffRevoked``."""
        return await self._do(
            m.Undo,
            "redemptions.undo",
            {"redemption_id": redemption_id},
            body={"merchant_id": merchant_id, **_staff(staff)},
        )

    async def refund_purchase(
        self,
        purchase_id: int,
        merchant_id: int,
        amount_fen: int,
        idempotency_key: str,
        reason: str = "",
        staff: Staff | None = None,
    ) -> m.Refund:
        """Refund ``amount_fen`` of a purchase inside its hold; the same key answers the first
        refund. Raises ``RefundRefused`` (``reason``: refund_after_hold, over_refund, …)."""
        body = {
            "merchant_id": merchant_id,
            "amount_fen": amount_fen,
            "reason": reason,
            "idempotency_key": idempotency_key,
            **_staff(staff),
        }
        return await self._do(m.Refund, "purchases.refund", {"purchase_id": purchase_id}, body=body)

    async def today(
        self,
        merchant_id: int,
        staff: Staff | None = None,
        day: dt.date | None = None,
        store_id: int | None = None,
    ) -> m.Today:
        """A cashier of a store gets that store's day; an owner or a key the whole merchant's,
        or the day of ``store_id`` when given."""
        query = {
            "date": day.isoformat() if day else None,
            "staff_channel": staff[0] if staff else None,
            "staff_external_id": staff[1] if staff else None,
            "store_id": store_id,
        }
        return await self._do(m.Today, "merchants.today", {"merchant_id": merchant_id}, query)

    def _statement_query(
        self,
        period: str | None,
        first: dt.date | None,
        last: dt.date | None,
        staff: Staff | None,
        form: str,
    ) -> dict[str, Any]:
        return {
            "period": period,
            "from": first.isoformat() if first else None,
            "to": last.isoformat() if last else None,
            "format": form if form != "json" else None,
            "staff_channel": staff[0] if staff else None,
            "staff_external_id": staff[1] if staff else None,
        }

    async def statement(
        self,
        merchant_id: int,
        period: str | None = None,
        *,
        first: dt.date | None = None,
        last: dt.date | None = None,
        staff: Staff | None = None,
    ) -> m.Statement:
        """A merchant's statement: ``period`` (``2026-11``, ``2026-11-05``) or local days
        ``first``..``last``; neither: this month so far. The bot names the owner it acts for
        (a cashier is refused with ``NotOwner``)."""
        query = self._statement_query(period, first, last, staff, "json")
        return await self._do(m.Statement, "merchants.statement", {"merchant_id": merchant_id},
                              query)

    async def statement_csv(
        self,
        merchant_id: int,
        period: str | None = None,
        *,
        first: dt.date | None = None,
        last: dt.date | None = None,
        staff: Staff | None = None,
    ) -> str:
        """The same statement as the ledger's CSV text (UTF-8, no BOM)."""
        query = self._statement_query(period, first, last, staff, "csv")
        status, payload = await self._call(
            "merchants.statement", {"merchant_id": merchant_id}, _clean(query), None
        )
        if status >= 400:
            raise from_response(status, payload)
        if not isinstance(payload, str):
            raise from_response(500, {"error": {"code": "internal", "message": "not CSV"}})
        return payload

    async def payout(
        self, merchant_id: int, period: str, idempotency_key: str, reference: str = ""
    ) -> m.Payout:
        """Record the payout of the merchant's settlement through ``period`` (admins); the
        same key or the same period again answers with the first payout. Raises
        ``PayoutRefused`` (``period_not_over``, ``paid_through_later``)."""
        body = {"period": period, "idempotency_key": idempotency_key, "reference": reference}
        return await self._do(
            m.Payout, "merchants.payout", {"merchant_id": merchant_id}, body=body
        )

    # merchants
    async def nearby(
        self,
        lat: float,
        lon: float,
        radius_m: int | None = None,
        category: str | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> m.Nearby:
        query = {
            "lat": lat,
            "lon": lon,
            "radius_m": radius_m,
            "category": category,
            "limit": limit,
            "offset": offset,
        }
        return await self._do(m.Nearby, "merchants.nearby", query=query)

    async def get_merchant(self, merchant_id: int) -> m.Merchant:
        return await self._do(m.Merchant, "merchants.get", {"merchant_id": merchant_id})

    async def create_merchant(self, **fields: Any) -> m.Merchant:
        return await self._do(m.Merchant, "merchants.create", body=fields)

    # staff
    async def create_staff_invite(
        self,
        merchant_id: int,
        role: str | None = None,
        staff: Staff | None = None,
        store_id: int | None = None,
    ) -> m.StaffInvite:
        """``role`` "owner" or "cashier"; unset, the merchant's first invite makes an owner.
        The bot names the owner it acts for in ``staff`` (owners invite cashiers only).
        ``store_id``: the store the cashier will work at (owners are merchant-wide)."""
        body = {"merchant_id": merchant_id, "role": role, "store_id": store_id, **_staff(staff)}
        return await self._do(m.StaffInvite, "staff.invite", body=body)

    async def add_store(
        self,
        merchant_id: int,
        name: str,
        lat: float,
        lon: float,
        address: str = "",
        hours: str = "",
        staff: Staff | None = None,
    ) -> m.Store:
        """A new store (门店) of the merchant; an owner's (``staff``), its key's or an admin's."""
        body = {
            "name": name,
            "address": address,
            "lat": lat,
            "lon": lon,
            "hours": hours,
            **_staff(staff),
        }
        return await self._do(m.Store, "stores.add", {"merchant_id": merchant_id}, body=body)

    async def get_store(self, store_id: int) -> m.Store:
        return await self._do(m.Store, "stores.get", {"store_id": store_id})

    async def list_stores(self, merchant_id: int, staff: Staff | None = None) -> m.StoreList:
        query = {
            "staff_channel": staff[0] if staff else None,
            "staff_external_id": staff[1] if staff else None,
        }
        return await self._do(m.StoreList, "stores.list", {"merchant_id": merchant_id}, query)

    async def list_staff(
        self, merchant_id: int, staff: Staff | None = None, include_revoked: bool = False
    ) -> m.StaffList:
        query = {
            "staff_channel": staff[0] if staff else None,
            "staff_external_id": staff[1] if staff else None,
            "include_revoked": "true" if include_revoked else None,
        }
        return await self._do(m.StaffList, "staff.list", {"merchant_id": merchant_id}, query)

    async def revoke_staff(
        self, merchant_id: int, channel: str, external_id: str, staff: Staff | None = None
    ) -> m.StaffMember:
        """Revoke at once; the revoked person's next call is refused with ``StaffRevoked``.
        Revoking again answers the first revocation (so a retry is safe)."""
        body = {"channel": channel, "external_id": external_id, **_staff(staff)}
        return await self._do(
            m.StaffMember, "staff.revoke", {"merchant_id": merchant_id}, body=body
        )

    async def redeem_staff_invite(self, code: str, channel: str, external_id: str) -> m.StaffLink:
        body = {"code": code, "channel": channel, "external_id": external_id}
        return await self._do(m.StaffLink, "staff.redeem_invite", body=body)

    async def staff_lookup(
        self, channel: str, external_id: str, include_revoked: bool = False
    ) -> m.StaffLink | None:
        """The person's live staff link; with ``include_revoked`` a revoked one too (its
        ``revoked_at`` set), so the bot can tell them why they are refused."""
        found = await self._do(
            m.StaffLookup,
            "staff.lookup",
            query={
                "channel": channel,
                "external_id": external_id,
                "include_revoked": "true" if include_revoked else None,
            },
        )
        return found.staff

    # feed, releases, stats
    async def events(self, after: int = 0, limit: int = 100) -> m.EventsPage:
        return await self._do(m.EventsPage, "events.read", query={"after": after, "limit": limit})

    async def release(self, day: dt.date | None = None) -> m.ReleaseResult:
        return await self._do(
            m.ReleaseResult, "releases.run", body={"date": day.isoformat() if day else None}
        )

    async def unusual_volume(self, day: dt.date | None = None) -> m.UnusualVolume:
        """Merchants whose purchase volume on local ``day`` (default yesterday) was unusual."""
        query = {"date": day.isoformat() if day else None}
        return await self._do(m.UnusualVolume, "alerts.unusual_volume", query=query)

    async def stats(self) -> m.Stats:
        return await self._do(m.Stats, "stats.read")

    # transparency (public: any key, or none, may read it)
    async def public_pool(self, days: int = 90) -> m.PublicPool:
        """Pool (fen), points, price and the newest ``days`` daily records (1-3660)."""
        return await self._do(m.PublicPool, "transparency.pool", query={"days": days})

    async def circle(self, lat: float, lon: float) -> m.Circle:
        """The 15-minute circle around a place (admins, through the bot or their own key)."""
        return await self._do(m.Circle, "circle.read", query={"lat": lat, "lon": lon})

    async def publish(self, day: dt.date | None = None) -> m.PublicDay:
        """Write local ``day``'s public record (admin); the release already does every day."""
        body = {"date": day.isoformat() if day else None}
        return await self._do(m.PublicDay, "transparency.publish", body=body)
