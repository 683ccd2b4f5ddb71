"""Rules at their exact edges (issue 15), on SQLite and PostgreSQL, with the ledger's clock held
still (``FixedClock``) and moved to the instant, never slept past it.

The figures are the agreed ones, written here rather than read from ``Rules`` or the modules:
DESIGN.md "Redemption" (a code lives 5 minutes; vouchers up to the merchant's cap, 20 % by
default, floor to the fen), "Voucher release" (vouchers expire after 90 days), README/contract
(a staff invite lives 72 hours; one bill at most 1,000,000 yuan), ``ledger/throttle.py``'s
policy (5 unknown codes free in a 15-minute window, then 2, 4, 8 ... seconds).
"Expires at T" means: usable strictly before T, refused from T on.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from sqlalchemy import select

from ledger.errors import (
    CodeExpired,
    CodeNotFound,
    InvalidRequest,
    InviteExpired,
    LedgerError,
    Throttled,
)
from ledger.models import (
    MerchantIn,
    PreviewRequest,
    PurchaseRequest,
    RedeemInviteRequest,
    RedeemRequest,
)
from ledger.principal import SYSTEM, Principal
from ledger.schema import RedemptionLot, VoucherLot
from ledger.service import LedgerService
from tests.conftest import World
from tests.ledger_support import FixedClock, buy

CODE_TTL = dt.timedelta(minutes=5)
INVITE_TTL = dt.timedelta(hours=72)
VOUCHER_TTL = dt.timedelta(days=90)
EXPIRING_NOTICE = dt.timedelta(days=3)
MAX_BILL_FEN = 100_000_000
TICK = dt.timedelta(microseconds=1)  # the finest step both databases store
UNKNOWN = "1" * 20  # well formed, never issued
WINDOW = dt.timedelta(minutes=15)


async def fails(awaitable: object, error: type[LedgerError]) -> LedgerError:
    with pytest.raises(error) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value


async def test_a_code_works_until_its_expiry_instant(world: World, clock: FixedClock) -> None:
    s, shop, member = world.service, world.merchant_id, world.member_ids[0]
    till = Principal("merchant", shop)
    code = await s.issue_code(SYSTEM, member)
    assert code.expires_at == clock.now + CODE_TTL
    clock.now = code.expires_at - TICK
    preview = await s.preview_redemption(
        till, PreviewRequest(code=code.numeric_code, merchant_id=shop, bill_fen=1000)
    )
    assert preview.code_expires_at == code.expires_at
    clock.now = code.expires_at
    await fails(s.preview_redemption(
        till, PreviewRequest(code=code.numeric_code, merchant_id=shop, bill_fen=1000)
    ), CodeExpired)
    await fails(s.redeem(till, RedeemRequest(
        code=code.numeric_code, merchant_id=shop, bill_fen=1000, vouchers_applied_fen=0,
        pay_fen=1000, idempotency_key="at-expiry"
    )), CodeExpired)
    # One tick before the instant the same redemption goes through.
    fresh = await s.issue_code(SYSTEM, member)
    clock.now = fresh.expires_at - TICK
    done = await s.redeem(till, RedeemRequest(
        code=fresh.link_code, merchant_id=shop, bill_fen=1000, vouchers_applied_fen=0,
        pay_fen=1000, idempotency_key="before-expiry"
    ))
    assert done.bill_fen == 1000


async def test_an_invite_works_until_its_expiry_instant(world: World, clock: FixedClock) -> None:
    s, shop = world.service, world.merchant_id
    first = await s.create_staff_invite(SYSTEM, shop)
    second = await s.create_staff_invite(SYSTEM, shop)
    assert first.expires_at == second.expires_at == clock.now + INVITE_TTL
    clock.now = first.expires_at
    await fails(s.redeem_staff_invite(SYSTEM, RedeemInviteRequest(
        code=first.code, channel="telegram", external_id="late"
    )), InviteExpired)
    clock.now = second.expires_at - TICK
    staff = await s.redeem_staff_invite(SYSTEM, RedeemInviteRequest(
        code=second.code, channel="telegram", external_id="in-time"
    ))
    assert staff.merchant_id == shop


async def _vouchers(s: LedgerService, world: World, clock: FixedClock) -> tuple[int, dt.datetime]:
    """Member 0 buys enough to hold vouchers after today's release: (fen held, expiry)."""
    for n in range(3):
        await buy(s, world.merchant_id, world.member_ids[0], 2_000_000, f"boundary-{n}")
    released = await s.release(SYSTEM, s.ctx.today())
    assert released.vouchers_fen > 0
    balance = await s.balance(SYSTEM, world.member_ids[0])
    assert balance.nearest_expiry == clock.now + VOUCHER_TTL
    return balance.vouchers_fen, balance.nearest_expiry


async def test_vouchers_expire_at_their_instant(world: World, clock: FixedClock) -> None:
    s, shop, member = world.service, world.merchant_id, world.member_ids[0]
    day = s.ctx.today()
    held, expires = await _vouchers(s, world, clock)
    till = Principal("merchant", shop)
    big_bill = held * 10  # the cap is not what limits here
    # Re-running the same day's release grants nothing again: only expiry and notices move.
    # The notice window opens exactly three days before the expiry.
    clock.now = expires - EXPIRING_NOTICE - TICK
    assert (await s.release(SYSTEM, day)).expiring_notices == 0
    clock.now = expires - EXPIRING_NOTICE
    assert (await s.release(SYSTEM, day)).expiring_notices == 1
    clock.now = expires - TICK
    code = await s.issue_code(SYSTEM, member)
    assert code.vouchers_fen == held
    before = await s.preview_redemption(
        till, PreviewRequest(code=code.numeric_code, merchant_id=shop, bill_fen=big_bill)
    )
    assert before.vouchers_applied_fen == held
    assert (await s.release(SYSTEM, day)).expired_lots == 0
    clock.now = expires
    at = await s.preview_redemption(
        till, PreviewRequest(code=(await s.issue_code(SYSTEM, member)).numeric_code,
                             merchant_id=shop, bill_fen=big_bill)
    )
    assert at.vouchers_applied_fen == 0
    assert (await s.release(SYSTEM, day)).expired_lots == 1
    assert (await s.balance(SYSTEM, member)).vouchers_fen == 0


@pytest.mark.parametrize(
    ("cap_bp", "bill_fen", "want"),
    [
        (2000, 1000, 200),  # exactly 20 %
        (2000, 1004, 200),  # 200.8 fen: floor, never round up
        (2000, 1005, 201),
        (1500, 999, 149),  # 149.85
        (10000, 1234, 1234),  # a 100 % cap takes the whole bill
        (0, 5000, 0),  # no vouchers at this merchant
    ],
)
async def test_the_voucher_cap_is_exact(
    world: World, clock: FixedClock, cap_bp: int, bill_fen: int, want: int
) -> None:
    s = world.service
    held, _ = await _vouchers(s, world, clock)
    assert held > 1234  # the cap, not the holding, limits every case above
    shop = await s.create_merchant(
        SYSTEM,
        MerchantIn(name="边界店", category="cafe", lat=30.2, lon=119.7, voucher_cap_bp=cap_bp),
    )
    till = Principal("merchant", shop.id)
    code = await s.issue_code(SYSTEM, world.member_ids[0])
    preview = await s.preview_redemption(
        till, PreviewRequest(code=code.numeric_code, merchant_id=shop.id, bill_fen=bill_fen)
    )
    assert (preview.vouchers_applied_fen, preview.pay_fen) == (want, bill_fen - want)
    done = await s.redeem(till, RedeemRequest(
        code=code.numeric_code, merchant_id=shop.id, bill_fen=bill_fen,
        vouchers_applied_fen=want, pay_fen=bill_fen - want, idempotency_key="cap-case"
    ))
    assert (done.vouchers_applied_fen, done.pay_fen) == (want, bill_fen - want)
    assert (await s.balance(SYSTEM, world.member_ids[0])).vouchers_fen == held - want


async def _lots(s: LedgerService, member_id: int) -> list[tuple[int, int]]:
    """(lot id, remaining fen) of a member's voucher lots, soonest-expiring first."""
    async with s.ctx.db.read() as session:
        rows = await session.execute(
            select(VoucherLot.id, VoucherLot.remaining_fen)
            .where(VoucherLot.member_id == member_id)
            .order_by(VoucherLot.expires_at, VoucherLot.id)
        )
        return [(int(i), int(f)) for i, f in rows]


async def _spent(s: LedgerService, redemption_id: int) -> list[tuple[int, int]]:
    """(lot id, fen) a redemption took from each lot: what an undo puts back."""
    async with s.ctx.db.read() as session:
        rows = await session.execute(
            select(RedemptionLot.lot_id, RedemptionLot.fen)
            .where(RedemptionLot.redemption_id == redemption_id)
            .order_by(RedemptionLot.lot_id)
        )
        return [(int(i), int(f)) for i, f in rows]


async def test_vouchers_are_spent_lot_by_lot_to_the_fen(
    world: World, clock: FixedClock
) -> None:
    """DESIGN.md "Redemption": vouchers are spent soonest-expiring first. Two lots (two days'
    releases): 1 fen comes from the first lot alone; an amount inside the first lot touches
    only it (no zero-fen row for the second); the first lot and exactly 1 fen more takes the
    second lot's fen too. Each redemption records exactly what it took from each lot."""
    s, member = world.service, world.member_ids[0]
    await _vouchers(s, world, clock)
    clock.advance(days=1)
    await buy(s, world.merchant_id, member, 2_000_000, "boundary-next-day")
    assert (await s.release(SYSTEM, s.ctx.today())).vouchers_fen > 0
    (first, a), (second, b) = await _lots(s, member)
    assert a > 101 and b > 1
    shop = await s.create_merchant(  # a cap of 100 %: the bill is what is applied
        SYSTEM,
        MerchantIn(name="全额店", category="cafe", lat=30.2, lon=119.7, voucher_cap_bp=10_000),
    )
    till = Principal("merchant", shop.id)
    spent_a = 0
    for n, (apply, want) in enumerate((
        (1, [(first, 1)]),
        (100, [(first, 100)]),
        (a - 101 + 1, [(first, a - 101), (second, 1)]),
    )):
        code = await s.issue_code(SYSTEM, member)
        done = await s.redeem(till, RedeemRequest(
            code=code.numeric_code, merchant_id=shop.id, bill_fen=apply,
            vouchers_applied_fen=apply, pay_fen=0, idempotency_key=f"lot-by-lot-{n}",
        ))
        assert await _spent(s, done.redemption_id) == want, apply
        spent_a += sum(fen for lot, fen in want if lot == first)
    assert await _lots(s, member) == [(first, a - spent_a), (second, b - 1)]
    assert (await s.balance(SYSTEM, member)).vouchers_fen == a + b - a - 1


async def test_the_holding_limits_below_the_cap(world: World, clock: FixedClock) -> None:
    s, shop = world.service, world.merchant_id
    held, _ = await _vouchers(s, world, clock)
    till = Principal("merchant", shop)
    exactly = held * 5  # 20 % of it is exactly what the member holds
    for bill, applied in ((exactly, held), (exactly - 5, held - 1), (exactly + 5, held)):
        code = await s.issue_code(SYSTEM, world.member_ids[0])
        preview = await s.preview_redemption(
            till, PreviewRequest(code=code.numeric_code, merchant_id=shop, bill_fen=bill)
        )
        assert preview.vouchers_applied_fen == applied, bill


async def test_the_largest_bill(world: World) -> None:
    s, shop, member = world.service, world.merchant_id, world.member_ids[0]
    till = Principal("merchant", shop)
    largest = await s.record_purchase(till, PurchaseRequest(
        merchant_id=shop, member_id=member, amount_fen=MAX_BILL_FEN, idempotency_key="max-bill"
    ))
    assert largest.amount_fen == MAX_BILL_FEN
    for attempt in (
        s.record_purchase(till, PurchaseRequest(
            merchant_id=shop, member_id=member, amount_fen=MAX_BILL_FEN + 1,
            idempotency_key="max-bill-plus-1",
        )),
        s.preview_redemption(till, PreviewRequest(
            code=UNKNOWN, merchant_id=shop, bill_fen=MAX_BILL_FEN + 1
        )),
        s.redeem(till, RedeemRequest(
            code=UNKNOWN, merchant_id=shop, bill_fen=MAX_BILL_FEN + 1, vouchers_applied_fen=0,
            pay_fen=MAX_BILL_FEN + 1, idempotency_key="r-max-p1"
        )),
    ):
        await fails(attempt, InvalidRequest)


async def test_guesses_are_loud(
    world: World, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """ledger/throttle.py: guessing is "loud and slow": every unknown code is a warning naming
    who guessed and how often in the window, with the code masked (README: codes are redacted
    from every line)."""
    s = world.service
    till = Principal("merchant", world.merchant_id)
    guessed = "12345678901234567890"
    with caplog.at_level(logging.WARNING, logger="ledger.throttle"):
        for _ in range(2):
            await fails(s.preview_redemption(
                till, PreviewRequest(code=guessed, merchant_id=world.merchant_id, bill_fen=100)
            ), CodeNotFound)
    lines = [r.getMessage() for r in caplog.records if r.name == "ledger.throttle"]
    assert len(lines) == 2, lines
    for n, line in enumerate(lines, start=1):
        assert f"from merchant:{world.merchant_id} ({n} in window)" in line, line
        assert "code=1234…" in line and guessed not in line, line


async def test_the_throttle_at_its_limits(world: World, clock: FixedClock) -> None:
    """Five unknown codes in a window are free; the sixth earns a 2 s wait and the seventh 4 s;
    a wait ends exactly when it says; a window is 15 minutes, the instant included."""
    s = world.service

    def guess(till: Principal) -> object:
        assert till.merchant_id is not None
        return s.preview_redemption(
            till, PreviewRequest(code=UNKNOWN, merchant_id=till.merchant_id, bill_fen=1000)
        )

    till = Principal("merchant", world.merchant_id)
    for _ in range(6):  # 1-5 free, the 6th sets a 2 s wait
        await fails(guess(till), CodeNotFound)
    wait = await fails(guess(till), Throttled)
    assert wait.details["retry_after"] == 2
    clock.advance(seconds=1.5)  # half a second left: still "wait 1 s", never "wait 0 s"
    assert (await fails(guess(till), Throttled)).details["retry_after"] == 1
    clock.advance(seconds=0.5)
    clock.now -= TICK
    assert (await fails(guess(till), Throttled)).details["retry_after"] == 1
    clock.now += TICK  # exactly when the wait ends
    await fails(guess(till), CodeNotFound)  # the 7th: 4 s
    wait = await fails(guess(till), Throttled)
    assert wait.details["retry_after"] == 4
    clock.advance(seconds=4)
    await fails(guess(till), CodeNotFound)  # the 8th: 8 s (doubling, not growing by 2)
    assert (await fails(guess(till), Throttled)).details["retry_after"] == 8
    clock.advance(seconds=8)

    # The window: five misses at t0, the sixth at exactly t0 + 15 min still counts as the sixth.
    shop = await s.create_merchant(
        SYSTEM, MerchantIn(name="窗口店", category="cafe", lat=30.2, lon=119.7)
    )
    for n, late in enumerate((dt.timedelta(0), TICK)):
        till = Principal("merchant", shop.id if n == 0 else world.other_merchant_id)
        start = clock.now
        for _ in range(5):
            await fails(guess(till), CodeNotFound)
        clock.now = start + WINDOW + late
        await fails(guess(till), CodeNotFound)
        if late:  # a tick after the window: counting started again, that miss the first of five
            for _ in range(4):
                await fails(guess(till), CodeNotFound)
            await fails(guess(till), CodeNotFound)  # the sixth of the new window
        await fails(guess(till), Throttled)
