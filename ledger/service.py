"""The ledger's one entry point: every operation, checked against the caller's role.

The HTTP API and the in-process client both call this, so a rule enforced here holds no matter
how the ledger is reached.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError

from ledger import (
    apikeys,
    balances,
    circle,
    events,
    members,
    merchants,
    migrate,
    payouts,
    previewed,
    purchases,
    redemptions,
    refunds,
    releases,
    staff,
    staff_access,
    statements,
    stats,
    stores,
    throttle,
    transparency,
    undo,
    unusual,
)
from ledger.context import Ctx
from ledger.db import Database
from ledger.errors import Forbidden, InvalidRequest
from ledger.journal import ensure_shards
from ledger.models import (
    AttachIdentityRequest,
    BalanceOut,
    CircleOut,
    CodeOut,
    EventsPage,
    Identity,
    IdentityLinkOut,
    InviteOut,
    LinkIdentityRequest,
    MemberOut,
    MerchantIn,
    MerchantOut,
    NearbyOut,
    PayoutOut,
    PayoutRequest,
    PreviewOut,
    PreviewRequest,
    PublicDay,
    PublicPoolOut,
    PurchaseOut,
    PurchaseRequest,
    RedeemInviteRequest,
    RedeemRequest,
    RedemptionOut,
    RefundOut,
    RefundRequest,
    ReleaseOut,
    ResolveMemberRequest,
    RevokeStaffRequest,
    StaffListOut,
    StaffMemberOut,
    StaffOut,
    StaffRole,
    StatementOut,
    StatsOut,
    StoreIn,
    StoreListOut,
    StoreOut,
    TodayOut,
    UndoOut,
    UndoRedemptionRequest,
    UnusualVolumeOut,
    UpdateMemberRequest,
)
from ledger.principal import Principal, require, require_own_merchant
from ledger.rules import Rules


class LedgerService:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.keys = apikeys.KeyRing(ctx)

    @classmethod
    async def open(
        cls, url: str, rules: Rules | None = None, *, pool_size: int = 20, ctx: Ctx | None = None
    ) -> LedgerService:
        """Connect, upgrade the schema if needed, and make sure the shard rows exist."""
        rules = rules or Rules()
        rules.check()
        ctx = ctx or Ctx(Database(url, pool_size=pool_size), rules)
        await migrate.upgrade(ctx.db)
        async with ctx.db.write() as session:
            await ensure_shards(session, rules.shards)
        return cls(ctx)

    async def close(self) -> None:
        await self.ctx.db.dispose()

    def _check_amount(self, fen: int) -> None:
        """Bills above the alliance's limit are refused (the models only bound the type)."""
        limit = self.ctx.rules.max_amount_fen
        if fen > limit:
            raise InvalidRequest("amount above the limit for one bill", max_amount_fen=limit)

    async def _acting_merchant(
        self, principal: Principal, merchant_id: int, staff_identity: Identity | None
    ) -> str:
        """Check the caller may act for ``merchant_id``; returns who is acting, for the logs.

        A merchant key acts for its own merchant. The bot acts for a staff member, and must say
        which one: the ledger, not the bot, decides whether that person is staff there.
        """
        return await self._acting(principal, merchant_id, staff_identity, owner=False)

    async def _acting(
        self,
        principal: Principal,
        merchant_id: int,
        staff_identity: Identity | None,
        *,
        owner: bool,
    ) -> str:
        """As ``_acting_merchant``; with ``owner`` the person the bot names must be an owner.
        A revoked person is refused with ``staff_revoked`` (ledger/staff_access.py)."""
        return (await self._acting_at(principal, merchant_id, staff_identity, None, owner=owner))[0]

    async def _acting_at(
        self,
        principal: Principal,
        merchant_id: int,
        staff_identity: Identity | None,
        store_id: int | None,
        *,
        owner: bool = False,
    ) -> tuple[str, int | None]:
        """As ``_acting``, and the store the call is made at (issue 11, stores): a cashier's
        own store, whatever the call names (naming another is refused); else the store named,
        checked to be the merchant's; None when none is. Raises ``InvalidRequest`` for a
        cashier naming another store, ``StoreNotFound`` for a store not of this merchant."""
        require_own_merchant(principal, merchant_id)
        label = principal.label
        if principal.role == "bot":
            if staff_identity is None:
                raise InvalidRequest("the bot must name the staff member it acts for")
            link = await staff_access.acting(self.ctx, merchant_id, staff_identity, owner=owner)
            label = f"staff:{staff_identity.channel}:{staff_identity.external_id}"
            if link.store_id is not None:
                if store_id not in (None, link.store_id):
                    raise InvalidRequest(
                        "a cashier works at their own store", store_id=link.store_id
                    )
                return label, link.store_id
        if store_id is not None:
            async with self.ctx.db.read() as session:
                await stores.check_belongs(session, merchant_id, store_id)
        return label, store_id

    # members
    async def resolve_member(self, p: Principal, req: ResolveMemberRequest) -> MemberOut:
        require(p, "members.resolve")
        return await members.resolve(self.ctx, req)

    async def get_member(self, p: Principal, member_id: int) -> MemberOut:
        require(p, "members.resolve")
        return await members.get(self.ctx, member_id)

    async def update_member(
        self, p: Principal, member_id: int, req: UpdateMemberRequest
    ) -> MemberOut:
        require(p, "members.update")
        return await members.update_member(self.ctx, member_id, req)

    async def link_identity(
        self, p: Principal, member_id: int, req: LinkIdentityRequest
    ) -> MemberOut:
        require(p, "members.link")
        return await members.link_identity(self.ctx, member_id, req)

    async def attach_identity(self, p: Principal, req: AttachIdentityRequest) -> IdentityLinkOut:
        require(p, "identities.attach")
        return await members.attach_identity(self.ctx, req)

    async def balance(
        self, p: Principal, member_id: int, limit: int = 5, before: int | None = None
    ) -> BalanceOut:
        require(p, "members.balance")
        return await balances.balance(self.ctx, member_id, limit, before)

    # purchases and redemptions
    async def record_purchase(self, p: Principal, req: PurchaseRequest) -> PurchaseOut:
        """Record a purchase (ledger/purchases.py). A till (merchant key, or the bot for a
        staff member) names the member by their code, which is spent (ledger/member_code.py);
        only the system names a bare member id (issue 11) — anyone else is refused 403
        ``forbidden`` with ``details.reason`` ``member_code_required``."""
        require(p, "purchases.record")
        self._check_amount(req.amount_fen)
        actor, store_id = await self._acting_at(p, req.merchant_id, req.staff, req.store_id)
        scope = f"purchase:m{req.merchant_id}"
        if req.code is None:
            if p.role != "system" and self.ctx.rules.purchase_needs_code:
                raise Forbidden(
                    "a purchase needs the member's code (scanned or typed), not a member id",
                    operation="purchases.record",
                    reason="member_code_required",
                )
            return await purchases.record(self.ctx, req, scope=scope, store_id=store_id)
        await throttle.check(self.ctx, actor)
        async with throttle.guess(self.ctx, actor, req.code):  # counted before the code
            return await purchases.record(self.ctx, req, scope=scope, store_id=store_id)

    async def refund_purchase(
        self, p: Principal, purchase_id: int, req: RefundRequest
    ) -> RefundOut:
        """Refund part or all of a purchase inside its hold (ledger/refunds.py): the merchant's
        own key, an admin, or the bot for an owner of the merchant it names. Raises NotFound,
        RefundRefused (409, with the reason) and IdempotencyConflict."""
        require(p, "purchases.refund")
        self._check_amount(req.amount_fen)
        by = await self._acting(p, req.merchant_id, req.staff, owner=True)
        return await refunds.refund(self.ctx, purchase_id, req, by)

    async def issue_code(self, p: Principal, member_id: int) -> CodeOut:
        require(p, "codes.issue")
        return await redemptions.issue(self.ctx, member_id)

    async def preview_redemption(self, p: Principal, req: PreviewRequest) -> PreviewOut:
        require(p, "redemptions.preview")
        self._check_amount(req.bill_fen)
        actor = await self._acting_merchant(p, req.merchant_id, req.staff)
        return await redemptions.preview(self.ctx, req, actor)

    async def redeem(self, p: Principal, req: RedeemRequest) -> RedemptionOut:
        require(p, "redemptions.redeem")
        self._check_amount(req.bill_fen)
        previewed.check_consistent(req)
        actor, store_id = await self._acting_at(p, req.merchant_id, req.staff, req.store_id)
        staff_label = actor if actor.startswith("staff:") else None
        return await redemptions.redeem(self.ctx, req, actor, staff_label, store_id)

    async def undo_redemption(
        self, p: Principal, redemption_id: int, req: UndoRedemptionRequest
    ) -> UndoOut:
        """Undo (撤销核销) within the window: owners, merchant and admin keys; a cashier their
        own redemption within minutes (ledger/undo.py). A second undo answers the first."""
        require(p, "redemptions.undo")
        require_own_merchant(p, req.merchant_id)
        if p.role == "bot":
            if req.staff is None:
                raise InvalidRequest("the bot must name the staff member it acts for")
            link = await staff_access.acting(self.ctx, req.merchant_id, req.staff)
            actor = f"staff:{req.staff.channel}:{req.staff.external_id}"
            return await undo.undo(
                self.ctx, redemption_id, req.merchant_id, actor, owner=link.role == "owner"
            )
        return await undo.undo(self.ctx, redemption_id, req.merchant_id, p.label, owner=True)

    async def today(
        self,
        p: Principal,
        merchant_id: int,
        staff_identity: Identity | None = None,
        day: dt.date | None = None,
        store_id: int | None = None,
    ) -> TodayOut:
        """A cashier of a store sees that store's day; an owner or a key the whole merchant's,
        or one store's when it names one."""
        require(p, "redemptions.today")
        _, at = await self._acting_at(p, merchant_id, staff_identity, store_id)
        return await staff.today(self.ctx, merchant_id, day, at)

    async def statement(
        self,
        p: Principal,
        merchant_id: int,
        first: dt.date,
        last: dt.date,
        staff_identity: Identity | None = None,
        label: str | None = None,
    ) -> StatementOut:
        """A merchant's statement for local days ``first``..``last`` (ledger/statements.py):
        its own key, an admin, or the bot for one of its owners (cashiers are refused with
        ``not_owner``)."""
        require(p, "merchants.statement")
        await self._acting(p, merchant_id, staff_identity, owner=True)
        return await statements.statement(self.ctx, merchant_id, first, last, label)

    async def payout(self, p: Principal, merchant_id: int, req: PayoutRequest) -> PayoutOut:
        """Record the payout of a merchant's settlement through a period (admins; issue 11)."""
        require(p, "merchants.payout")
        return await payouts.pay(self.ctx, merchant_id, req, p.label)

    # merchants
    async def nearby(
        self,
        p: Principal,
        lat: float,
        lon: float,
        radius_m: int | None = None,
        category: str | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> NearbyOut:
        require(p, "merchants.read")
        return await merchants.nearby(self.ctx, lat, lon, radius_m, category, limit, offset)

    async def get_merchant(self, p: Principal, merchant_id: int) -> MerchantOut:
        require(p, "merchants.read")
        return await merchants.get(self.ctx, merchant_id)

    async def create_merchant(self, p: Principal, req: MerchantIn) -> MerchantOut:
        require(p, "merchants.write")
        try:
            return await merchants.create(self.ctx, req)
        except IntegrityError:  # the one unique column a caller sets
            raise InvalidRequest(
                "that external_ref is already in the directory", external_ref=req.external_ref
            ) from None

    # stores
    async def add_store(
        self, p: Principal, merchant_id: int, req: StoreIn, staff_identity: Identity | None = None
    ) -> StoreOut:
        """A new store of the merchant: its owners (through the bot), its own key, or an admin."""
        require(p, "stores.write")
        await self._acting(p, merchant_id, staff_identity, owner=True)
        return await stores.add(self.ctx, merchant_id, req)

    async def list_stores(
        self, p: Principal, merchant_id: int, staff_identity: Identity | None = None
    ) -> StoreListOut:
        require(p, "stores.read")
        await self._acting(p, merchant_id, staff_identity, owner=True)
        return await stores.list_for(self.ctx, merchant_id)

    async def get_store(self, p: Principal, store_id: int) -> StoreOut:
        require(p, "merchants.read")
        return await stores.get(self.ctx, store_id)

    # staff
    async def create_staff_invite(
        self,
        p: Principal,
        merchant_id: int,
        role: StaffRole | None = None,
        staff_identity: Identity | None = None,
        store_id: int | None = None,
    ) -> InviteOut:
        """An invite for ``role`` (unset: owner for the merchant's first invite, else cashier),
        a cashier's optionally for one store. Through the bot an owner invites cashiers only
        (issue 11)."""
        require(p, "staff.invite")
        await self._acting(p, merchant_id, staff_identity, owner=True)
        if p.role == "bot":
            if role == "owner":
                raise Forbidden("an owner invites cashiers; owners are made by the alliance")
            role = "cashier"
        chosen = await staff_access.invite_role(self.ctx, merchant_id, role)
        return await staff.create_invite(self.ctx, merchant_id, chosen, store_id)

    async def list_staff(
        self,
        p: Principal,
        merchant_id: int,
        staff_identity: Identity | None = None,
        include_revoked: bool = False,
    ) -> StaffListOut:
        require(p, "staff.list")
        await self._acting(p, merchant_id, staff_identity, owner=True)
        return await staff_access.list_staff(self.ctx, merchant_id, include_revoked)

    async def revoke_staff(
        self, p: Principal, merchant_id: int, req: RevokeStaffRequest
    ) -> StaffMemberOut:
        require(p, "staff.revoke")
        by = await self._acting(p, merchant_id, req.staff, owner=True)
        target = Identity(channel=req.channel, external_id=req.external_id)
        return await staff_access.revoke(
            self.ctx, merchant_id, target, by, cashiers_only=p.role == "bot"
        )

    async def redeem_staff_invite(self, p: Principal, req: RedeemInviteRequest) -> StaffOut:
        require(p, "staff.redeem_invite")
        return await staff.redeem_invite(self.ctx, req)

    async def staff_lookup(
        self, p: Principal, channel: str, external_id: str, include_revoked: bool = False
    ) -> StaffOut | None:
        require(p, "staff.lookup")
        return await staff.lookup(self.ctx, channel, external_id, include_revoked)

    # feed, releases, stats
    async def events(self, p: Principal, after: int = 0, limit: int = 100) -> EventsPage:
        require(p, "events.read")
        if not (after >= 0 and 1 <= limit <= 1000):
            raise InvalidRequest("after must be ≥ 0 and limit 1-1000")
        return await events.read_feed(self.ctx.db, after, limit)

    async def prune_events(self, p: Principal, days: int | None = None) -> int:
        """Delete events older than ``days`` (default ``Rules.event_retention_days``); returns
        how many (``events.prune`` says what always stays)."""
        require(p, "releases.run")
        keep = days if days is not None else self.ctx.rules.event_retention_days
        if keep < 1:
            raise InvalidRequest("the retention window is at least one day")
        return await events.prune(self.ctx.db, before=self.ctx.now() - dt.timedelta(days=keep))

    async def release(self, p: Principal, day: dt.date | None = None) -> ReleaseOut:
        require(p, "releases.run")
        done = await releases.run(self.ctx, day)
        # The day's public record follows its release (issue 13), so the heads every copy holds
        # include the release; a second run finds the record there and changes nothing.
        await transparency.publish(self.ctx, done.date)
        return done

    async def publish(self, p: Principal, day: dt.date | None = None) -> PublicDay:
        require(p, "transparency.publish")
        return await transparency.publish(self.ctx, day)

    async def circle(self, p: Principal, lat: float, lon: float) -> CircleOut:
        require(p, "circle.read")
        return await circle.circle(self.ctx, lat, lon)

    async def public_pool(self, p: Principal, days: int = 90) -> PublicPoolOut:
        require(p, "transparency.pool")
        return await transparency.public_pool(self.ctx, days)

    async def revoke_key(self, p: Principal, key_id: int) -> apikeys.Revoked:
        """Revoke key ``key_id`` at once in every ledger process (issue 11). Raises NotFound."""
        require(p, "keys.revoke")
        return await apikeys.revoke(self.ctx, key_id)

    async def unusual_volume(self, p: Principal, day: dt.date | None = None) -> UnusualVolumeOut:
        """Merchants whose purchase volume on local ``day`` (default: yesterday) was far above
        their own usual (ledger/unusual.py)."""
        require(p, "alerts.unusual_volume")
        return await unusual.unusual_volume(self.ctx, day)

    async def stats(self, p: Principal) -> StatsOut:
        require(p, "stats.read")
        return await stats.stats(self.ctx)
