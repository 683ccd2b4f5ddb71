"""The embedded ledger's extras, reached from the ``greenpoints`` command and the console demo.

The bot package may reach the ledger only through this package; this module is that door for
operator commands and for the demo's seeding and merchant-side actions.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ledger_client.base import LedgerClient


def run_ledger_cli(argv: Sequence[str]) -> int:
    from ledger.cli import main

    return main(argv)


@dataclass
class DemoSetup:
    """What the console demo needs beside the bot: a seeded ledger and a shop to buy at."""

    ledger: LedgerClient
    merchant_id: int
    spot: tuple[float, float]  # where the demo person stands: next to the demo shop

    async def buy(self, address: int | str, yuan: str, channel: str = "console") -> None:
        """The demo shop records a purchase of ``yuan`` for the demo person (``channel``,
        ``address``: the console's, or the WeChat demo's openid)."""
        try:
            fen = int((Decimal(yuan) * 100).to_integral_exact())
        except (InvalidOperation, ValueError):
            raise ValueError(f"not an amount in yuan: {yuan!r}") from None
        from ledger_client.inprocess import InProcessLedgerClient

        assert isinstance(self.ledger, InProcessLedgerClient)
        bot = self.ledger.as_role("bot")
        member = await bot.resolve_member(channel, str(address))
        # As at a real till, the shop reads the customer's code (issue 11); here it is a fresh
        # one, so a code shown with /qr before this stops working.
        code = await bot.issue_code(member.id)
        shop = self.ledger.as_role("merchant", self.merchant_id)
        await shop.record_purchase(
            self.merchant_id,
            None,
            fen,
            f"demo-{uuid.uuid4().hex}",
            code=code.numeric_code,
        )

    async def staff_invite(self) -> str:
        """A one-time invite to the demo shop, as the alliance's admin would hand a cashier."""
        from ledger_client.inprocess import InProcessLedgerClient

        assert isinstance(self.ledger, InProcessLedgerClient)
        invite = await self.ledger.as_role("admin").create_staff_invite(self.merchant_id)
        return invite.code

    async def release(self, day: dt.date | None = None) -> None:
        from ledger_client.inprocess import InProcessLedgerClient

        assert isinstance(self.ledger, InProcessLedgerClient)
        await self.ledger.as_role("admin").release(day)

    async def close(self) -> None:
        return None


async def demo_setup(ledger: LedgerClient, external_id: str) -> DemoSetup:
    """Seed the Lin'an demo alliance into an in-process ledger (once) and describe it."""
    from ledger.seed import seed_demo
    from ledger_client.inprocess import InProcessLedgerClient

    if not isinstance(ledger, InProcessLedgerClient):
        raise ValueError("the demo needs the ledger in-process (a database URL)")
    # One person plays customer and cashier in the demo: the insider limits would refuse them.
    ctx = ledger.service.ctx
    ctx.rules = ctx.rules.model_copy(update={"insider_limits": False})
    report = await seed_demo(ledger.service)
    shop = await ledger.get_merchant(report.demo_merchant_id)
    del external_id
    return DemoSetup(ledger, shop.id, (shop.lat + 0.0012, shop.lon - 0.0009))
