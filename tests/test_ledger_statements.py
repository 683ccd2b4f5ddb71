"""Statements and payouts (issue 11), on SQLite and PostgreSQL: every statement — each local day
and each month of a scene over four days across a month's end, with purchases at two merchants,
releases, redemptions with vouchers, undos and a payout in the middle — reconciles with the
journal to the fen, the balance carried forward included; a payout is journaled, idempotent
(its key, and its period) and shown as paid; the CSV over HTTP (``format=csv`` and ``Accept:
text/csv``) says the same; ``verify`` stays clean; refusals say why."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import func, select

from ledger import verify
from ledger.errors import InvalidRequest, NotOwner, PayoutRefused
from ledger.models import (
    PayoutRequest,
    RedeemInviteRequest,
    RefundRequest,
    StatementOut,
    UndoRedemptionRequest,
)
from ledger.principal import SYSTEM, Principal
from ledger.schema import (
    JournalEntry,
    MerchantBalance,
    Payout,
    Purchase,
    PurchaseRefund,
    Redemption,
)
from ledger.service import LedgerService
from ledger.statements import yuan
from tests.conftest import Served, World
from tests.ledger_support import FixedClock, buy, cli, http, pay_with_code

START = dt.datetime(2026, 10, 30, 2, 0)  # 10:00 in Shanghai, two days before November
DAYS = [dt.date(2026, 10, 30) + dt.timedelta(days=n) for n in range(4)]
ADMIN = Principal("admin", key_id=9)


def local_day(service: LedgerService, moment: dt.datetime) -> dt.date:
    return moment.replace(tzinfo=dt.UTC).astimezone(service.ctx.zone).date()


async def from_journal(
    service: LedgerService, merchant_id: int
) -> dict[dt.date, dict[str, int]]:
    """Per local day, what the journal itself says the merchant is owed (``credit``: postings to
    its settlement), owes (``debit``: the concessions of the purchases, redemptions and undos
    booked at it) and was paid (``paid``: postings to its payouts account, on the last day of
    the period paid)."""
    async with service.ctx.db.read() as session:
        entries = (await session.scalars(select(JournalEntry).order_by(JournalEntry.id))).all()
        purchase_at = dict((await session.execute(select(Purchase.id, Purchase.merchant_id))).all())
        redemption_at = dict(
            (await session.execute(select(Redemption.id, Redemption.merchant_id))).all()
        )
        ends = dict((await session.execute(select(Payout.id, Payout.through))).all())
        refund_at = dict(
            (await session.execute(select(PurchaseRefund.id, PurchaseRefund.merchant_id))).all()
        )
    days: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    settlement = f"merchant:{merchant_id}:settlement"
    payouts = f"merchant:{merchant_id}:payouts"
    for e in entries:
        kind, _, ident = e.ref.partition(":")
        owner = {
            "purchase": purchase_at.get(int(ident)) if kind == "purchase" else None,
            "redemption": redemption_at.get(int(ident)) if kind == "redemption" else None,
            "undo": redemption_at.get(int(ident)) if kind == "undo" else None,
            "refund": refund_at.get(int(ident)) if kind == "refund" else None,
        }.get(kind)
        # A payout counts on the last day of the period it paid, whenever it was recorded.
        moment = ends[int(ident)] - dt.timedelta(microseconds=1) if kind == "payout" else (
            e.created_at
        )
        day = days[local_day(service, moment)]
        for account, _unit, amount in e.postings:
            if account == settlement:
                day["credit"] += amount
            elif account == payouts:
                day["paid"] += amount
            elif account == "concessions" and owner == merchant_id:
                day["debit"] -= amount
    return days


def reconcile(
    s: StatementOut, journal: dict[dt.date, dict[str, int]], status: str | None = None
) -> None:
    """The statement ``s`` against the journal's figures, to the fen."""
    inside = [d for d in journal if s.from_date <= d <= s.to_date]
    before = [d for d in journal if d < s.from_date]
    opening = sum(journal[d]["credit"] - journal[d]["debit"] - journal[d]["paid"] for d in before)
    credit = sum(journal[d]["credit"] for d in inside)
    debit = sum(journal[d]["debit"] for d in inside)
    paid = sum(journal[d]["paid"] for d in inside)
    where = f"statement {s.period}"
    assert (s.opening_due_fen, s.credit_fen, s.debit_fen) == (opening, credit, debit), where
    assert s.closing_due_fen == opening + credit - debit - s.paid_fen, where
    assert sum(line.credit_fen for line in s.lines) == credit, where
    assert sum(line.debit_fen for line in s.totals) == debit, where
    for day in inside:
        lines = [line for line in s.lines if line.date == day]
        figures = journal[day]
        assert sum(x.credit_fen for x in lines) == figures["credit"], (where, day)
        assert sum(x.debit_fen for x in lines) == figures["debit"], (where, day)
    assert s.paid_fen == paid, where
    if status is not None:
        assert s.status == status, (where, s.status)


async def scene(service: LedgerService, clock: FixedClock, world: World) -> dict[str, Any]:
    """Four days at the shop (and some at the other merchant, which no statement may show)."""
    shop, other = world.merchant_id, world.other_merchant_id
    m0, m1, m2 = world.member_ids
    undo = UndoRedemptionRequest(merchant_id=shop)
    # Day 1: purchases, then the release: members get vouchers, the shop its points released.
    await buy(service, shop, m0, 2_000_000, "stmt-d1-a")
    await buy(service, shop, m1, 350_000, "stmt-d1-b")
    await buy(service, other, m2, 99_000, "stmt-d1-c")
    await service.release(SYSTEM, DAYS[0])
    # Day 2: a redemption with vouchers, one undone the same day, a plain purchase.
    clock.advance(days=1)
    await pay_with_code(service, shop, m0, 12_000, "stmt-d2-r1")
    undone = await pay_with_code(service, shop, m1, 8_800, "stmt-d2-r2")
    await service.undo_redemption(SYSTEM, undone.redemption_id, undo)
    await buy(service, shop, m2, 4_321, "stmt-d2-p")
    await service.release(SYSTEM, DAYS[1])
    # Day 3 (1 November): October is paid in the middle of the day's business.
    clock.advance(days=1)
    await buy(service, shop, m1, 77_777, "stmt-d3-a")
    paid = await service.payout(
        ADMIN, shop, PayoutRequest(period="2026-10", idempotency_key="st-pay-oct", reference="T1")
    )
    await pay_with_code(service, shop, m0, 30_000, "stmt-d3-r")
    await service.release(SYSTEM, DAYS[2])
    # Day 4: one more redemption and its undo, a purchase at the other merchant.
    clock.advance(days=1)
    late = await pay_with_code(service, shop, m1, 5_000, "stmt-d4-r")
    await service.undo_redemption(SYSTEM, late.redemption_id, undo)
    await buy(service, other, m0, 1_000, "stmt-d4-o")
    # And a part of a purchase refunded inside its points' hold (issue 11).
    rules = service.ctx.rules
    service.ctx.rules = rules.model_copy(update={"points_hold_days": 7})
    returned = await buy(service, shop, m2, 60_000, "stmt-d4-p")
    await service.refund_purchase(
        SYSTEM,
        returned.purchase_id,
        RefundRequest(merchant_id=shop, amount_fen=25_000, idempotency_key="stmt-d4-refund"),
    )
    service.ctx.rules = rules
    return {"paid": paid}


@pytest.fixture
def clock(service: LedgerService) -> FixedClock:
    fixed = FixedClock(START)
    service.ctx.clock = fixed
    return fixed


async def test_every_statement_reconciles_with_the_journal(
    service: LedgerService, world: World, clock: FixedClock
) -> None:
    shop = world.merchant_id
    done = await scene(service, clock, world)
    journal = await from_journal(service, shop)
    kinds: set[str] = set()
    for day in DAYS:
        s = await service.statement(SYSTEM, shop, day, day)
        reconcile(s, journal)
        kinds |= {line.kind for line in s.lines}
        for line in s.lines:  # an undo gives back the vouchers and the concession
            if line.kind == "redemption_undone":
                assert line.credit_fen < 0 and line.debit_fen < 0 and line.count == 1
        for line in s.lines:  # a refund takes back its part of the concession
            if line.kind == "purchase_refunded":
                assert line.amount_fen == -25_000 and line.debit_fen < 0 and line.count == 1
    assert kinds == {
        "purchases", "vouchers_accepted", "points_released", "redemption_undone",
        "purchase_refunded",
    }
    october = await service.statement(SYSTEM, shop, dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    reconcile(october, journal, "paid")
    assert october.period == "2026-10" and october.paid_by == done["paid"]
    # Its payout settled exactly the month's net (nothing came before it): nothing left due.
    assert october.net_fen == october.paid_fen == done["paid"].amount_fen != 0
    assert october.closing_due_fen == 0
    november = await service.statement(SYSTEM, shop, dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    reconcile(november, journal, "open")
    assert november.opening_due_fen == 0  # October's balance was paid, not carried
    both = await service.statement(SYSTEM, shop, DAYS[0], DAYS[-1])
    reconcile(both, journal)
    assert both.paid_fen == done["paid"].amount_fen and both.payouts == [done["paid"]]
    # Day 3's statement carries in what was due after October's payout: nothing.
    assert (await service.statement(SYSTEM, shop, DAYS[2], DAYS[2])).opening_due_fen == 0
    # Day 4's carries in day 3's business, unpaid.
    day4 = await service.statement(SYSTEM, shop, DAYS[3], DAYS[3])
    day3 = journal[DAYS[2]]
    assert day4.opening_due_fen == day3["credit"] - day3["debit"]
    # The journal's settlement account is the sum of every credit line, the settlement cache too.
    async with service.ctx.db.read() as session:
        cached = await session.scalar(
            select(func.sum(MerchantBalance.settlement_fen)).where(
                MerchantBalance.merchant_id == shop
            )
        )
    assert cached == sum(j["credit"] for j in journal.values())
    checked = await verify.verify(service.ctx)
    assert checked.ok, checked.problems


async def test_a_payout_is_journaled_idempotent_and_carried(
    service: LedgerService, world: World, clock: FixedClock
) -> None:
    shop = world.merchant_id
    done = (await scene(service, clock, world))["paid"]
    again = await service.payout(
        ADMIN, shop, PayoutRequest(period="2026-10", idempotency_key="st-pay-oct", reference="T1")
    )
    assert again == done  # the same key: the first answer
    other_key = await service.payout(
        ADMIN, shop, PayoutRequest(period="2026-10", idempotency_key="st-pay-oct-2")
    )
    assert other_key == done  # the same period: its payout, not a second one
    with pytest.raises(PayoutRefused) as early:
        await service.payout(
            ADMIN, shop, PayoutRequest(period="2026-11", idempotency_key="stmt-pay-nov")
        )
    assert early.value.details["reason"] == "period_not_over"
    # A day later, 1 and 2 November are paid (an earlier day of October is then refused).
    clock.advance(days=1)
    day3 = await service.payout(
        ADMIN, shop, PayoutRequest(period="2026-11-02", idempotency_key="st-pay-d4")
    )
    journal = await from_journal(service, shop)
    assert day3.covers_from == done.through
    assert day3.amount_fen == sum(journal[d]["credit"] - journal[d]["debit"] for d in DAYS[2:])
    assert journal[DAYS[3]]["paid"] == day3.amount_fen != 0
    last_of_october = PayoutRequest(period="2026-10-31", idempotency_key="st-pay-oct-31")
    assert await service.payout(ADMIN, shop, last_of_october) == done  # it ends where October did
    with pytest.raises(PayoutRefused) as late:
        await service.payout(
            ADMIN, shop, PayoutRequest(period="2026-11-01", idempotency_key="st-pay-old")
        )
    assert late.value.details["reason"] == "paid_through_later"
    # Nothing is due on the paid days; the other merchant never paid shows its due as unpaid.
    for day in DAYS:
        reconcile(await service.statement(SYSTEM, shop, day, day), journal)
    s = await service.statement(SYSTEM, shop, DAYS[2], DAYS[3])
    assert (s.status, s.closing_due_fen, s.paid_by) == ("paid", 0, day3)
    theirs = await service.statement(SYSTEM, world.other_merchant_id, DAYS[0], DAYS[3])
    assert theirs.status == "unpaid" and theirs.closing_due_fen < 0  # its concessions
    async with service.ctx.db.read() as session:
        refs = (
            await session.scalars(
                select(JournalEntry.ref).where(JournalEntry.kind == "payout").order_by(
                    JournalEntry.id
                )
            )
        ).all()
    assert refs == [f"payout:{done.payout_id}", f"payout:{day3.payout_id}"]
    checked = await verify.verify(service.ctx)
    assert checked.ok, checked.problems


async def test_statements_over_http_as_json_and_csv(
    served: Served, world: World, clock: FixedClock, http_session: Any
) -> None:
    service = served.service
    shop = world.merchant_id
    await scene(service, clock, world)
    url = f"{served.url}/v1/merchants/{shop}/statement"
    as_json = await http(http_session, "GET", url, key=served.keys["merchant"],
                         params={"period": "2026-10"})
    assert as_json.status == 200
    expected = await service.statement(SYSTEM, shop, dt.date(2026, 10, 1), dt.date(2026, 10, 31),
                                       label="2026-10")
    assert StatementOut.model_validate(as_json.body) == expected.model_copy(
        update={"as_of": StatementOut.model_validate(as_json.body).as_of}
    )
    for params, headers in (({"period": "2026-10", "format": "csv"}, {}),
                            ({"period": "2026-10"}, {"Accept": "text/csv"})):
        async with http_session.get(
            url, params=params, headers={"Authorization": f"Bearer {served.keys['admin']}",
                                         **headers}
        ) as answer:
            assert answer.status == 200 and answer.content_type == "text/csv"
            rows = list(csv.reader(io.StringIO(await answer.text())))
        closing = next(r for r in rows if r[1] == "closing_due")
        fen = round(float(closing[-1]) * 100)  # test-side reading of the yuan text only
        assert fen == expected.closing_due_fen
        assert rows[0][-1] == "paid"
    # Another merchant's key, and a day that does not exist, are refused with the reason.
    other = await http(http_session, "GET", f"{served.url}/v1/merchants/"
                       f"{world.other_merchant_id}/statement", key=served.keys["merchant"])
    assert other.status == 403
    bad = await http(http_session, "GET", url, key=served.keys["admin"],
                     params={"period": "2026-02-30"})
    assert bad.status == 400 and bad.body["error"]["code"] == "invalid_request"
    paid = await http(http_session, "POST", f"{served.url}/v1/merchants/{shop}/payouts",
                      key=served.keys["merchant"],
                      json_body={"period": "2026-10", "idempotency_key": "merchant-try"})
    assert paid.status == 403


async def test_owners_only_through_the_bot(
    service: LedgerService, world: World, clock: FixedClock
) -> None:
    shop = world.merchant_id
    people = {}
    for role in ("owner", "cashier"):
        invite = await service.create_staff_invite(SYSTEM, shop, role)  # type: ignore[arg-type]
        who = ("telegram", f"st-{role}")
        await service.redeem_staff_invite(
            SYSTEM, RedeemInviteRequest(code=invite.code, channel=who[0], external_id=who[1])
        )
        people[role] = who
    from ledger.models import Identity

    bot = Principal("bot")
    owner = Identity(channel=people["owner"][0], external_id=people["owner"][1])
    cashier = Identity(channel=people["cashier"][0], external_id=people["cashier"][1])
    s = await service.statement(bot, shop, DAYS[0], DAYS[0], owner)
    assert s.status == "open" and s.lines == []
    with pytest.raises(NotOwner):
        await service.statement(bot, shop, DAYS[0], DAYS[0], cashier)
    with pytest.raises(InvalidRequest):
        await service.statement(SYSTEM, shop, DAYS[1], DAYS[0])


async def test_the_cli_states_and_pays(
    service: LedgerService, world: World, clock: FixedClock, database_url: str, tmp_path: Any
) -> None:
    """``greenpoints ledger statement`` and ``payout``, as an admin types them: the CSV file
    starts with the BOM Excel needs, a payout run twice records one payout."""
    shop = world.merchant_id
    await scene(service, clock, world)
    out = tmp_path / "october.csv"
    run = await cli(database_url, "statement", "--merchant", str(shop), "--period", "2026-10",
                    "--format", "csv", "--output", str(out))
    assert run.code == 0, run.err
    data = out.read_bytes()
    assert data.startswith("\ufeff".encode())
    expected = await service.statement(SYSTEM, shop, dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    assert f"closing_due,,,,{yuan(expected.credit_fen)}" in data.decode("utf-8-sig")
    text = await cli(database_url, "statement", "--merchant", str(shop), "--period", "2026-10")
    assert text.code == 0 and "2026-10" in text.out and "paid by payout" in text.out
    first = await cli(database_url, "payout", "--merchant", str(world.other_merchant_id),
                      "--period", "2026-10", "--reference", "BANK-1")
    again = await cli(database_url, "payout", "--merchant", str(world.other_merchant_id),
                      "--period", "2026-10", "--reference", "BANK-1")
    assert first.code == again.code == 0, first.err + again.err
    assert first.out == again.out and "paid by the merchant" in first.out
    # Run again with another reference, or none: the period's payout, not a key conflict.
    for reference in ("BANK-2", ""):
        other = await cli(database_url, "payout", "--merchant", str(world.other_merchant_id),
                          "--period", "2026-10", "--reference", reference)
        assert other.code == 0 and other.out == first.out, other.err
    early = await cli(database_url, "payout", "--merchant", str(shop), "--period", "2099-01")
    assert early.code == 2 and "has not ended" in early.err
