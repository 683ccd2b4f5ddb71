"""Faults the ledger must survive, with real processes: the ledger SIGKILLed under 32 tills and
restarted on the same database, and its PostgreSQL stopped and started under it.

What "survive" means here: an answered request is in the ledger; nothing is in the ledger that
was never sent or was refused; a request whose answer was lost (in flight at the kill) is either
in the ledger or not, and a retry with the same idempotency key settles it — so in the end every
key has exactly one effect, the balances are exactly what the answers add up to, and
``greenpoints ledger verify`` passes. While the database is down the ledger says so (503, the
agreed JSON error) and never answers a balance or a success it cannot know; it comes back by
itself when the database does.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import pytest

from ledger_client.errors import LedgerClientError, Unavailable
from ledger_client.http import HttpLedgerClient
from ledger_client.models import PurchaseResult, Receipt
from tests.ledger_process import (
    Alliance,
    Books,
    LedgerProcess,
    read_books,
    seed_alliance,
    throwaway_postgres,
)
from tests.ledger_support import cli

TILLS = 32
OPS_PER_TILL = 50
KILL_AFTER = 500  # answered requests before the SIGKILL, about a third of the plan
KEY_PREFIX = "fault-"

# --- the kill test ----------------------------------------------------------------------------

Kind = Literal["purchase", "redeem"]
State = Literal["planned", "sending", "answered", "failed"]


@dataclass
class Op:
    """One keyed write a till means to make, and what became of it."""

    key: str
    kind: Kind
    merchant_id: int
    member_id: int
    amount_fen: int
    code: str | None = None  # the code the redeem request carried, reused by its retries
    previewed: tuple[int, int] = (0, 0)  # vouchers applied and pay (fen) the preview showed
    state: State = "planned"
    answer: PurchaseResult | Receipt | None = None
    errors: list[str] = field(default_factory=list)
    sends: int = 0

    @property
    def effect_id(self) -> int:
        """The id of the row the answer names (purchase or redemption)."""
        if isinstance(self.answer, PurchaseResult):
            return self.answer.purchase_id
        assert isinstance(self.answer, Receipt), self
        return self.answer.redemption_id


@dataclass
class Till:
    """A cashier's till (merchant key) and the bot showing the member's code (bot key); it
    serves two members of its own, so no other till's code request revokes its codes."""

    shop: HttpLedgerClient
    bot: HttpLedgerClient
    ops: list[Op]

    async def attempt(self, op: Op) -> None:
        """Send ``op`` once; the answer or the error is recorded on it, never raised."""
        try:
            if op.kind == "redeem" and op.code is None:
                code = (await self.bot.issue_code(op.member_id)).numeric_code
                shown = await self.shop.preview_redemption(code, op.merchant_id, op.amount_fen)
                op.code, op.previewed = code, (shown.vouchers_applied_fen, shown.pay_fen)
            op.state, op.sends = "sending", op.sends + 1
            if op.kind == "purchase":
                op.answer = await self.shop.record_purchase(
                    op.merchant_id, op.member_id, op.amount_fen, op.key
                )
            else:
                assert op.code is not None
                applied, pay = op.previewed
                op.answer = await self.shop.redeem(
                    op.code,
                    op.merchant_id,
                    op.amount_fen,
                    op.key,
                    vouchers_applied_fen=applied,
                    pay_fen=pay,
                )
            op.state = "answered"
        except LedgerClientError as exc:
            op.state = "failed"
            op.errors.append(f"{type(exc).__name__}: {exc.message[:120]}")

    async def close(self) -> None:
        await self.shop.close()
        await self.bot.close()


def plan(alliance: Alliance, till: int) -> list[Op]:
    rng = random.Random(till)
    shop = alliance.merchant_ids[till % 2]
    mine = alliance.member_ids[2 * till : 2 * till + 2]
    ops = []
    for n in range(OPS_PER_TILL):
        kind: Kind = "redeem" if rng.random() < 0.25 else "purchase"
        amount = rng.randint(100, 20_000) if kind == "purchase" else rng.randint(2_000, 9_000)
        ops.append(Op(f"{KEY_PREFIX}{till:02d}-{n:03d}", kind, shop, rng.choice(mine), amount))
    return ops


async def first_of(*waits: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def check_phase_one(
    ops: list[Op], books: Books, in_flight: set[str], seed: Books
) -> set[str]:
    """Before any retry: every answered key is in the ledger with the answer it gave, and the
    ledger holds nothing else but requests that were in flight at the kill. Returns the keys
    that took effect without their till hearing so."""
    answered = {op.key: op for op in ops if op.state == "answered"}
    recorded = set(books.keyed)
    lost = sorted(set(answered) - recorded)
    assert not lost, f"answered but not in the ledger: {lost[:5]}"
    for key, op in answered.items():
        stored = books.keyed[key]
        assert stored.get("purchase_id", stored.get("redemption_id")) == op.effect_id, key
    phantom = sorted(recorded - set(answered) - in_flight)
    assert not phantom, f"in the ledger though never answered nor in flight: {phantom[:5]}"
    by_key = {op.key: op for op in ops}
    redeemed = {k for k in recorded if by_key[k].kind == "redeem"}
    # No row without its key: every purchase row is the seed's, a keyed purchase's, or the paid
    # part of a keyed redemption; every redemption row a keyed redemption's.
    assert len(books.redemptions) == len(redeemed)
    assert len(books.purchases) == len(seed.purchases) + len(recorded)
    return recorded - set(answered)


def check_final(ops: list[Op], books: Books, seed: Books, alliance: Alliance) -> None:
    """Each key exactly one effect, and the balances exactly what the answers add up to."""
    assert all(op.state == "answered" for op in ops), [o for o in ops if o.state != "answered"][:3]
    assert set(books.keyed) == {op.key for op in ops}
    for kind in ("purchase", "redeem"):
        ids = [op.effect_id for op in ops if op.kind == kind]
        assert len(set(ids)) == len(ids), f"two keys answered with one {kind}"
    redeems = [op for op in ops if op.kind == "redeem"]
    assert len(books.redemptions) == len(redeems)
    assert len(books.purchases) == len(seed.purchases) + len(ops)
    points = Counter(seed.member_points)
    vouchers = Counter(seed.member_vouchers)
    shop_points = Counter(seed.merchant_points)
    settlement = Counter(seed.merchant_settlement)
    for op in ops:
        answer = op.answer
        if isinstance(answer, PurchaseResult):
            assert (answer.member_id, answer.amount_fen) == (op.member_id, op.amount_fen)
            points[op.member_id] += answer.member_points
            shop_points[op.merchant_id] += answer.merchant_points
        else:
            assert isinstance(answer, Receipt)
            assert answer.bill_fen == op.amount_fen
            assert answer.pay_fen == op.amount_fen - answer.vouchers_applied_fen
            row = books.redemptions[answer.redemption_id]
            assert (row.member_id, row.merchant_id) == (op.member_id, op.merchant_id)
            assert row.purchase_id is not None
            paid = books.purchases[row.purchase_id]
            assert (paid.amount_fen, paid.member_points) == (answer.pay_fen, answer.points_earned)
            points[op.member_id] += answer.points_earned
            vouchers[op.member_id] -= answer.vouchers_applied_fen
            shop_points[op.merchant_id] += paid.merchant_points
            settlement[op.merchant_id] += answer.vouchers_applied_fen
    for member in alliance.member_ids:
        got = (books.member_points.get(member, 0), books.member_vouchers.get(member, 0))
        assert got == (points[member], vouchers[member]), member
    for shop in alliance.merchant_ids:
        got = (books.merchant_points.get(shop, 0), books.merchant_settlement.get(shop, 0))
        assert got == (shop_points[shop], settlement[shop]), shop
    assert sum(o.answer.vouchers_applied_fen for o in redeems if isinstance(o.answer, Receipt))


@pytest.mark.slow
async def test_ledger_killed_under_32_tills_loses_and_repeats_nothing(database_url: str) -> None:
    """SIGKILL the ledger while 32 tills record purchases and redemptions over HTTP, restart it
    on the same database, and hold the ledger to every answer it gave — then let the tills retry
    what went unanswered and check that every key took effect exactly once."""
    started = time.monotonic()
    alliance = await seed_alliance(database_url, members=2 * TILLS)
    seed = alliance.books
    ledger = LedgerProcess(database_url)
    await ledger.start()
    tills = [
        Till(
            HttpLedgerClient(ledger.url, alliance.merchant_keys[alliance.merchant_ids[t % 2]],
                             attempts=1),
            HttpLedgerClient(ledger.url, alliance.bot_key, attempts=1),
            plan(alliance, t),
        )
        for t in range(TILLS)
    ]
    ops = [op for till in tills for op in till.ops]
    try:
        # Phase 1: the tills work until the ledger dies under them.
        answered, enough, stopped = 0, asyncio.Event(), False

        async def work(till: Till) -> None:
            nonlocal answered
            for op in till.ops:
                if stopped:
                    return
                await till.attempt(op)
                if op.state == "answered":
                    answered += 1
                    if answered >= KILL_AFTER:
                        enough.set()

        workers = asyncio.gather(*(work(t) for t in tills))
        await first_of(enough.wait(), asyncio.shield(workers))
        assert enough.is_set(), f"only {answered} answers before the tills ran out of work"
        # The same instant, with no await between: who is in flight, and nobody starts more.
        in_flight = {op.key for op in ops if op.state == "sending"}
        answered_at_kill = answered
        stopped = True
        killed_at = time.monotonic()
        assert await ledger.kill() == -9
        await workers
        phase_one = Counter(op.state for op in ops)
        failures = Counter(e.split(":")[0] for op in ops for e in op.errors)
        assert set(failures) <= {Unavailable.__name__}, failures  # the kill, nothing else
        assert in_flight, "the kill caught no request in flight; it tested nothing"

        await ledger.start()
        restarted_in = time.monotonic() - killed_at
        books = await read_books(database_url, KEY_PREFIX)
        unanswered_effects = check_phase_one(ops, books, in_flight, seed)
        first_verify = await cli(database_url, "verify")
        assert first_verify.code == 0, first_verify.err

        # Phase 2: each till retries what failed, with the same key, and sends what it had not.
        retried = [op for op in ops if op.state == "failed"]
        never_sent = [op for op in ops if op.state == "planned"]

        async def finish(till: Till) -> None:
            for op in till.ops:
                for _ in range(3):  # a pooled connection to the dead process may fail once
                    if op.state == "answered":
                        break
                    await till.attempt(op)

        await asyncio.gather(*(finish(t) for t in tills))
        for op in ops:  # a retry of a request that took effect gets the first answer back
            if op.key in unanswered_effects:
                stored = books.keyed[op.key]
                assert stored.get("purchase_id", stored.get("redemption_id")) == op.effect_id
        final = await read_books(database_url, KEY_PREFIX)
        check_final(ops, final, seed, alliance)
        for member in alliance.member_ids[:4]:  # and the API says the same as the database
            balance = await tills[0].bot.balance(member)
            assert (balance.points, balance.vouchers_fen) == (
                final.member_points.get(member, 0), final.member_vouchers.get(member, 0))
        last_verify = await cli(database_url, "verify")
        assert last_verify.code == 0, last_verify.err
    finally:
        for till in tills:
            await till.close()
        await ledger.stop()
    kind = "sqlite" if database_url.startswith("sqlite") else "postgres"
    print(
        f"\n[kill {kind}] requests planned={len(ops)} "
        f"({sum(o.kind == 'redeem' for o in ops)} redemptions); before the kill: "
        f"answered={answered_at_kill} (+{phase_one['answered'] - answered_at_kill} read after "
        f"the kill), in flight at kill={len(in_flight)}, failed={phase_one['failed']}, "
        f"not sent={phase_one['planned']}; in the ledger though unanswered="
        f"{len(unanswered_effects)}; retried={len(retried)} (+{len(never_sent)} first sends); "
        f"sends={sum(o.sends for o in ops)}; keys with 0 or 2+ effects=0; "
        f"restart {restarted_in:.1f} s; whole test {time.monotonic() - started:.1f} s"
    )


# --- PostgreSQL stopped and started under the ledger ------------------------------------------

Phase = Literal["up", "stopping", "down", "starting", "back"]


@dataclass(frozen=True)
class Heard:
    """One answer: what was asked, in which phase it was sent and answered, and the answer."""

    what: str
    sent: Phase
    heard: Phase
    status: int
    body: Any


@dataclass
class Outage:
    phase: Phase = "up"
    heard: list[Heard] = field(default_factory=list)
    events: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))
    targets: dict[str, int] = field(default_factory=dict)
    stopping: bool = False

    def note(self, what: str, sent: Phase, status: int, body: Any) -> None:
        self.heard.append(Heard(what, sent, self.phase, status, body))
        for name, count in self.targets.items():
            if self._count(name) >= count:
                self.events[name].set()

    def _count(self, name: str) -> int:
        if name == "bought-up":
            return sum(h.status == 201 and h.sent == "up" for h in self.heard)
        if name == "down":
            return sum(h.sent == "down" and h.heard == "down" for h in self.heard)
        return sum(h.status == 201 and h.sent == "back" for h in self.heard)  # bought-back

    async def reach(self, name: str, count: int, within: float = 60.0) -> None:
        self.targets[name] = count
        if self._count(name) < count:
            await asyncio.wait_for(self.events[name].wait(), within)


async def ask(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    """One request; the body decoded as JSON when it is JSON, else kept as text; status 0 when
    no answer came at all (the ledger process stays up here, so that must not happen)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        async with session.request(method, url, data=data, headers=headers) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, repr(exc)
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def is_unavailable(status: int, body: Any) -> bool:
    """The agreed shape for "the database is not there": 503 and a JSON error, no traceback."""
    return (
        status == 503
        and isinstance(body, dict)
        and set(body) == {"error"}
        and body["error"].get("code") == "unavailable"
        and isinstance(body["error"].get("message"), str)
        and "Traceback" not in body["error"]["message"]
    )


@pytest.mark.slow
async def test_ledger_rides_out_a_postgres_restart() -> None:
    """Stop the ledger's PostgreSQL (immediate: backends killed, no checkpoint) under a served
    ledger with tills buying and reading balances, then start it again. While it is down every
    answer is the JSON 503 and /healthz says unavailable; afterwards the ledger recovers with no
    help, every key has taken effect once and the balances are exact."""
    async with throwaway_postgres() as pg:
        alliance = await seed_alliance(pg.url, members=16, vouchers=False)
        ledger = LedgerProcess(pg.url)
        await ledger.start()
        base = ledger.url
        outage = Outage()
        rng = random.Random(7)
        points: dict[int, int] = defaultdict(int)  # what the answers say each member holds
        keys: dict[str, tuple[int, int]] = {}  # key -> (member, amount)
        sends: Counter[str] = Counter()
        answers: dict[str, dict[str, Any]] = {}
        wrong: list[str] = []
        health = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        timeout = aiohttp.ClientTimeout(total=15)
        sessions = [
            aiohttp.ClientSession(
                timeout=timeout,
                headers={"Authorization": f"Bearer {alliance.merchant_keys[shop]}"},
            )
            for shop in alliance.merchant_ids
        ]
        bot = aiohttp.ClientSession(
            timeout=timeout, headers={"Authorization": f"Bearer {alliance.bot_key}"}
        )

        async def till(t: int) -> None:
            """Buy for its own members; a purchase that is not answered is retried with its key
            (the client's short backoff between tries) until it is; then read the balance,
            which must be exactly what the answers add up to."""
            shop = alliance.merchant_ids[t % 2]
            session = sessions[t % 2]
            member = alliance.member_ids[t]
            n = 0
            while not outage.stopping:
                key = f"pg-{t:02d}-{n:04d}"
                n += 1
                amount = rng.randint(100, 50_000)
                keys[key] = (member, amount)
                body = {"merchant_id": shop, "member_id": member, "amount_fen": amount,
                        "idempotency_key": key, "green_tags": []}
                while True:
                    sent = outage.phase
                    sends[key] += 1
                    status, answer = await ask(session, "POST", f"{base}/v1/purchases", body)
                    outage.note("purchase", sent, status, answer)
                    if status == 201:
                        answers[key] = answer
                        points[member] += answer["member_points"]
                        break
                    if outage.stopping:
                        break  # left for the retry pass below
                    await asyncio.sleep(0.02)
                if key not in answers:
                    break
                sent = outage.phase
                status, answer = await ask(bot, "GET", f"{base}/v1/members/{member}/balance")
                outage.note("balance", sent, status, answer)
                if status == 200 and answer["points"] != points[member]:
                    wrong.append(f"member {member}: {answer['points']} != {points[member]}")

        async def reader(t: int) -> None:
            """Balance reads of members nobody is buying for: always 0 points, or 503."""
            member = alliance.member_ids[8 + t]
            while not outage.stopping:
                sent = outage.phase
                status, answer = await ask(bot, "GET", f"{base}/v1/members/{member}/balance")
                outage.note("balance", sent, status, answer)
                if status == 200 and answer["points"] != 0:
                    wrong.append(f"idle member {member} shows {answer['points']} points")
                await asyncio.sleep(0.01)

        workers = asyncio.gather(*(till(t) for t in range(8)), *(reader(t) for t in range(4)))
        health_down: tuple[int, Any] | None = None
        recovered_in = 0.0
        try:
            try:
                await outage.reach("bought-up", 40)
                outage.phase = "stopping"
                await pg.stop("immediate")
                outage.phase = "down"
                await outage.reach("down", 40)
                health_down = await ask(health, "GET", f"{base}/healthz")
                outage.phase = "starting"
                await pg.start()
                outage.phase = "back"
                back_at = time.monotonic()
                deadline = back_at + 30
                while (await ask(health, "GET", f"{base}/healthz"))[0] != 200:
                    assert time.monotonic() < deadline, (
                        f"no recovery in 30 s:\n{ledger.tail()}\npostgres:\n{pg.log_tail()}"
                    )
                    await asyncio.sleep(0.05)  # polling another process; nothing to await
                recovered_in = time.monotonic() - back_at
                await outage.reach("bought-back", 40, within=30)
            finally:
                outage.stopping = True
                await workers
            # Whatever a till had not yet had answered is retried with its key, once more.
            for key, (member, amount) in keys.items():
                if key in answers:
                    continue
                t = int(key.split("-")[1])
                sends[key] += 1
                status, answer = await ask(
                    sessions[t % 2], "POST", f"{base}/v1/purchases",
                    {"merchant_id": alliance.merchant_ids[t % 2], "member_id": member,
                     "amount_fen": amount, "idempotency_key": key, "green_tags": []},
                )
                assert status == 201, (status, answer)
                answers[key] = answer
                points[member] += answer["member_points"]
            verified = await cli(pg.url, "verify")
            books = await read_books(pg.url, "pg-")
        finally:
            for s in (*sessions, bot, health):
                await s.close()
            await ledger.stop()
        down = [h for h in outage.heard if h.sent == "down" and h.heard == "down"]
        print(f"\n[pg restart] answers={len(outage.heard)} "
              f"by status={dict(sorted(Counter(h.status for h in outage.heard).items()))}; "
              f"sent and answered while PostgreSQL was down={len(down)} "
              f"({dict(Counter((h.what, h.status) for h in down))}); purchases={len(keys)}, "
              f"sent more than once={sum(n > 1 for n in sends.values())}, "
              f"sends={sum(sends.values())}; "
              f"recovered {recovered_in:.2f} s after PostgreSQL was back")

    # While it was down — sent and answered with the database stopped — only the JSON 503.
    assert len(down) >= 40 and {h.what for h in down} == {"purchase", "balance"}
    not_503 = [(h.what, h.status, h.body) for h in down if not is_unavailable(h.status, h.body)]
    assert not not_503, not_503[:3]
    assert health_down is not None and is_unavailable(*health_down), health_down
    # Around it too, never an error of another kind: an answer, or "unavailable".
    odd = [(h.what, h.sent, h.heard, h.status, h.body) for h in outage.heard
           if h.status not in (200, 201) and not is_unavailable(h.status, h.body)]
    assert not odd, f"{len(odd)} odd answers, e.g. {odd[:3]}; the ledger said:\n{ledger.tail(60)}"
    assert not wrong, wrong[:3]
    # Every key took effect once; the books are what the answers say.
    assert verified.code == 0, verified.err
    assert set(books.keyed) == set(keys) == set(answers)
    assert len(books.purchases) == len(keys)
    assert len({a["purchase_id"] for a in answers.values()}) == len(answers)
    for key, stored in books.keyed.items():
        assert stored["purchase_id"] == answers[key]["purchase_id"], key
    for member in alliance.member_ids:
        assert books.member_points.get(member, 0) == points[member], member
    merchant_points: Counter[int] = Counter()
    for answer in answers.values():
        merchant_points[answer["merchant_id"]] += answer["merchant_points"]
    for shop in alliance.merchant_ids:
        assert books.merchant_points.get(shop, 0) == merchant_points[shop], shop
