"""Purchases: the only way points come into existence.

``book_purchase`` is shared by a plain purchase and by the paid part of a redemption, so both
mint by exactly the same rule and land in the same journal entry as the rest of their movement.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.sql.expression import Executable

from ledger import (
    events,
    idempotency,
    insider,
    journal,
    member_code,
    merchants,
    mint_lots,
    purchase_cap,
)
from ledger.context import Ctx
from ledger.db import Bound, Conn, Statement, column_params, dialect_insert, dialect_name
from ledger.errors import MemberNotFound
from ledger.journal import FEN, POINTS, Posting
from ledger.models import PriceOut, PurchaseOut, PurchaseRequest
from ledger.money import Price, PurchaseSplit, split_purchase
from ledger.schema import Member, MerchantBalance, Purchase


def price_out(price: Price) -> PriceOut:
    return PriceOut(
        pool_fen=price.pool_fen, points=price.points, fen_per_point=price.fen_per_point()
    )


async def current_price(session: Conn) -> Price:
    pool, points = await journal.totals(session)
    return Price(pool, points)


@dataclass(frozen=True)
class Booked:
    purchase_id: int
    split: PurchaseSplit
    postings: list[Posting]


_members = Member.metadata.tables[Member.__tablename__]
_balances = MerchantBalance.metadata.tables[MerchantBalance.__tablename__]
_purchases = Purchase.metadata.tables[Purchase.__tablename__]

_credit_member = (
    update(_members)
    .where(_members.c.id == bindparam("member_id"))
    .values(
        points=_members.c.points + bindparam("points", type_=_members.c.points.type),
        last_active_at=bindparam("now", type_=_members.c.last_active_at.type),
    )
    .returning(_members.c.id)
)
_CREDIT_MEMBER = Statement(_credit_member)


def _credit_merchant(dialect: str) -> Any:
    stmt = dialect_insert(dialect, _balances).values(column_params(_balances, skip=()))
    return stmt.on_conflict_do_update(
        index_elements=[_balances.c.merchant_id, _balances.c.shard],
        set_={
            "points": _balances.c.points + stmt.excluded.points,
            "settlement_fen": _balances.c.settlement_fen + stmt.excluded.settlement_fen,
        },
    )


_CREDIT_MERCHANT = Statement(_credit_merchant)
# A purchase's claim also reads the point price and the merchant's terms: one round trip.
_CLAIM = idempotency.Claimer(
    *journal.totals_subqueries(),
    *merchants.terms_subqueries(),
    insider.insider_subquery(),
    *purchase_cap.subqueries(),
)
_RECORD = Statement(insert(_purchases).values(column_params(_purchases)).returning(_purchases.c.id))


async def credit_member_points(
    session: Conn, member_id: int, points: int, now: dt.datetime
) -> None:
    if not await _CREDIT_MEMBER.rows(session, member_id=member_id, points=points, now=now):
        raise MemberNotFound("no such member", member_id=member_id)


async def credit_merchant(
    session: Conn, merchant_id: int, shard: int, points: int, settlement_fen: int
) -> None:
    """Add to the merchant's slice for ``shard``; the caller holds that shard's lock."""
    await merchant_credit(merchant_id, shard, points, settlement_fen).rows(session)


def merchant_credit(merchant_id: int, shard: int, points: int, settlement_fen: int) -> Bound:
    """``credit_merchant``, bound to run later in a ``db.batch`` with other statements."""
    return _CREDIT_MERCHANT.bind(
        p_merchant_id=merchant_id, p_shard=shard, p_points=points, p_settlement_fen=settlement_fen
    )


async def book_purchase(
    session: Conn,
    ctx: Ctx,
    *,
    merchant_id: int,
    concession_bp: int,
    member_id: int,
    amount_fen: int,
    green_tags: list[str],
    price: Price,
    now: dt.datetime,
    store_id: int | None = None,
) -> Booked:
    """Record the purchase row (at ``store_id``, if said), credit the member, and return the
    postings still to be posted."""
    split = split_purchase(amount_fen, concession_bp, bool(green_tags), price, ctx.rules)
    await credit_member_points(session, member_id, split.member_points, now)
    row = _purchase_row(
        merchant_id, member_id, amount_fen, split, price, green_tags, now, store_id
    )
    purchase_id = await _RECORD.scalar(session, **row)
    return Booked(purchase_id, split, _postings(merchant_id, member_id, split))


def _purchase_row(
    merchant_id: int,
    member_id: int,
    amount_fen: int,
    split: PurchaseSplit,
    price: Price,
    green_tags: list[str],
    now: dt.datetime,
    store_id: int | None,
) -> dict[str, Any]:
    return {
        "p_store_id": store_id,
        "p_merchant_id": merchant_id,
        "p_member_id": member_id,
        "p_amount_fen": amount_fen,
        "p_concession_fen": split.concession_fen,
        "p_member_points": split.member_points,
        "p_merchant_points": split.merchant_points,
        "p_price_pool_fen": price.pool_fen,
        "p_price_points": price.points,
        "p_green_tags": green_tags,
        "p_created_at": now,
    }


def _postings(merchant_id: int, member_id: int, split: PurchaseSplit) -> list[Posting]:
    minted = split.member_points + split.merchant_points
    postings: list[Posting] = [
        (journal.CONCESSIONS, FEN, -split.concession_fen),
        (journal.POOL, FEN, split.concession_fen),
        (journal.ISSUANCE, POINTS, -minted),
        (journal.member_points(member_id), POINTS, split.member_points),
        (journal.merchant_points(merchant_id), POINTS, split.merchant_points),
    ]
    return [p for p in postings if p[2] != 0]


def _book_and_lock(dialect: str) -> Executable:
    """PostgreSQL: credit the member, record the purchase (only if the member was there) and
    lock the shard's head, in one statement; the locking clause sits above the join, so the
    member's row is locked before the shard's, as everywhere else."""
    credited = _credit_member.cte("credited")
    columns = [c for c in _purchases.c if c.name != "id"]
    values = column_params(_purchases) | {_purchases.c.member_id: credited.c.id}
    recorded = (
        insert(_purchases)
        .from_select(columns, select(*(values[c] for c in columns)))
        .returning(_purchases.c.id)
        .cte("recorded")
    )
    return journal.head_lock(recorded.c.id)


_BOOK_AND_LOCK = Statement(_book_and_lock)


async def _book_locked(
    session: Conn,
    ctx: Ctx,
    merchant: merchants.Terms,
    req: PurchaseRequest,
    member_id: int,
    price: Price,
    shard: int,
    now: dt.datetime,
    store_id: int | None,
) -> tuple[Booked, tuple[int, str]]:
    """``book_purchase`` and the shard's head, locked: three statements, or on PostgreSQL one."""
    if dialect_name(session) != "postgresql":
        booked = await book_purchase(
            session,
            ctx,
            merchant_id=merchant.id,
            concession_bp=merchant.concession_bp,
            member_id=member_id,
            amount_fen=req.amount_fen,
            green_tags=sorted(req.green_tags),
            price=price,
            now=now,
            store_id=store_id,
        )
        head_seq, head_hash = await journal.lock_head(session, shard)
        return booked, (head_seq, head_hash)
    split = split_purchase(
        req.amount_fen, merchant.concession_bp, bool(req.green_tags), price, ctx.rules
    )
    row = _purchase_row(
        merchant.id, member_id, req.amount_fen, split, price, sorted(req.green_tags), now,
        store_id,
    )
    found = await _BOOK_AND_LOCK.first(
        session, member_id=member_id, points=split.member_points, now=now, k=shard, **row
    )
    if found is None:
        raise MemberNotFound("no such member", member_id=member_id)
    purchase_id, head_seq, head_hash = found
    booked = Booked(purchase_id, split, _postings(merchant.id, member_id, split))
    return booked, (int(head_seq), str(head_hash))


async def record(
    ctx: Ctx, req: PurchaseRequest, scope: str, store_id: int | None = None
) -> PurchaseOut:
    """Record a purchase (see the module docstring) at ``store_id`` (the store the service
    resolved for the caller; None: not said; a retry is the same purchase whichever store it
    names: the first answer stands). With ``req.code`` the member is the code's and the code is
    spent in the same transaction (``member_code``); raises CodeNotFound, CodeUsed, CodeExpired,
    CodeRevoked, MemberNotFound, MerchantNotFound, InsiderRefused, PurchaseCapReached and
    IdempotencyConflict."""
    # Tags are a set: the same purchase sent with its tags in another order is a retry; a code
    # typed as digits or scanned as a link is the same code.
    request = req.model_dump(mode="json", exclude={"idempotency_key", "staff", "store_id"})
    for optional in ("code", "member_id"):  # absent as before issue 11: old retries still match
        if request.get(optional) is None:
            request.pop(optional, None)
    request["green_tags"] = sorted(set(request["green_tags"]))
    if req.code is not None:
        request["code"] = member_code.fingerprint(req.code)
    fingerprint = idempotency.request_hash(request)

    async def work(session: Conn) -> PurchaseOut:
        now = ctx.now()
        day_start, day_end = ctx.day_bounds(ctx.today())
        code = await member_code.find(session, req.code) if req.code is not None else None
        member_id = code.member_id if code is not None else req.member_id
        assert member_id is not None  # PurchaseRequest holds one of the two
        claimed = await _CLAIM.claim(
            session,
            scope,
            req.idempotency_key,
            fingerprint,
            now,
            merchant_id=req.merchant_id,
            member_id=member_id,
            day_start=day_start,
            day_end=day_end,
        )
        if claimed.replay is not None:
            return PurchaseOut.model_validate(claimed.replay)
        if code is not None:
            await member_code.spend(session, code, now)
        pool, points, *terms, insiders, today_count, today_fen = claimed.also
        merchant = merchants.terms_from(req.merchant_id, terms)
        if ctx.rules.insider_limits:
            insider.refuse_if(int(insiders or 0), req.merchant_id)
        purchase_cap.refuse_if(
            ctx.rules, int(today_count or 0), int(today_fen or 0), req.amount_fen, merchant.id
        )
        price = Price(int(pool), int(points))
        shard = journal.pick_shard(ctx.rules.shards)
        booked, head = await _book_locked(
            session, ctx, merchant, req, member_id, price, shard, now, store_id
        )
        out = PurchaseOut(
            purchase_id=booked.purchase_id,
            merchant_id=merchant.id,
            member_id=member_id,
            amount_fen=req.amount_fen,
            concession_fen=booked.split.concession_fen,
            member_points=booked.split.member_points,
            merchant_points=booked.split.merchant_points,
            price=price_out(price),
        )
        event = events.emission(
            events.POINTS_EARNED,
            now=now,
            member_id=member_id,
            merchant_id=merchant.id,
            payload={
                "purchase_id": booked.purchase_id,
                "points": booked.split.member_points,
                "amount_fen": req.amount_fen,
                "merchant_name": merchant.name,
                "green": bool(req.green_tags),
            },
        )
        await journal.append(
            session,
            shard=shard,
            head=head,
            kind="purchase",
            ref=f"purchase:{booked.purchase_id}",
            postings=booked.postings,
            now=now,
            also=(
                merchant_credit(merchant.id, shard, booked.split.merchant_points, 0),
                *mint_lots.minting(
                    member_id, booked.purchase_id, booked.split.member_points, price, now
                ),
                event,
                idempotency.completion(claimed, out.model_dump(mode="json")),
            ),
        )
        return out

    return await ctx.db.run_direct(work)
