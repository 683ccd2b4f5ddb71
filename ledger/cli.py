"""``greenpoints ledger …``: run and operate the ledger service.

The database comes from ``GREENPOINTS_LEDGER_URL`` (default: a SQLite file in the working
directory). Every command upgrades an empty or older database first.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import make_url

from ledger import (
    apikeys,
    csv_text,
    importer,
    observability,
    published_heads,
    seed,
    statements,
    verify,
)
from ledger.db import normalize_url, url_from_env
from ledger.errors import LedgerError
from ledger.models import PayoutRequest, RefundRequest, RevokeStaffRequest, StoreIn
from ledger.principal import SYSTEM
from ledger.rules import Rules
from ledger.service import LedgerService


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (0 or -3 partitions mean nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="greenpoints ledger", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    sub.add_parser("migrate", help="upgrade the database schema and exit")
    sub.add_parser("seed-demo", help="create the demo alliance around Lin'an (once)")
    imp = sub.add_parser("import-merchants", help="import merchants from a CSV file")
    imp.add_argument("file", type=Path)
    key = sub.add_parser("create-key", help="create an API key (printed once)")
    key.add_argument("--role", required=True, choices=["bot", "merchant", "admin"])
    key.add_argument("--merchant", type=int, help="the merchant a merchant key acts for")
    key.add_argument("--label", default="")
    revoke = sub.add_parser("revoke-key", help="revoke an API key in every ledger process")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, help="the key's id")
    which.add_argument("--key", help="the key itself ('-' reads it from standard input)")
    invite = sub.add_parser("staff-invite", help="create a one-time staff invite")
    invite.add_argument("--merchant", type=int, required=True)
    invite.add_argument(
        "--role",
        choices=["owner", "cashier"],
        help="default: owner for the merchant's first invite, cashier after it",
    )
    invite.add_argument(
        "--store", type=int, help="a cashier's store (see list-stores); default: merchant-wide"
    )
    invite.add_argument("--bot-username", help="print the t.me deep link for this bot")
    invite.add_argument("--qr", type=Path, help="also write the deep link as a QR PNG")
    store = sub.add_parser("add-store", help="add a store (门店) to a merchant")
    store.add_argument("--merchant", type=int, required=True)
    store.add_argument("--name", required=True)
    store.add_argument("--lat", type=float, required=True, help="degrees")
    store.add_argument("--lon", type=float, required=True, help="degrees")
    store.add_argument("--address", default="")
    store.add_argument("--hours", default="", help="e.g. 08:00-22:00")
    stores_list = sub.add_parser("list-stores", help="list a merchant's stores")
    stores_list.add_argument("--merchant", type=int, required=True)
    staff_list = sub.add_parser("staff-list", help="list a merchant's owners and cashiers")
    staff_list.add_argument("--merchant", type=int, required=True)
    staff_list.add_argument("--all", action="store_true", help="include revoked staff")
    revoke = sub.add_parser(
        "staff-revoke", help="revoke a staff member at once (their next call is refused)"
    )
    revoke.add_argument("--merchant", type=int, required=True)
    revoke.add_argument("--channel", required=True, help="e.g. telegram, wechat")
    revoke.add_argument("--external-id", required=True, help="their id on that channel")
    release = sub.add_parser(
        "release",
        help="run the day's voucher release and expiry",
        description="Run the day's voucher release, expiry and expiring notices. A date after "
        "today (local time) is refused; a past date only catches up a day missed since the "
        "last finished release (oldest first) or resumes an unfinished one; a finished date is "
        "reported again and grants nothing twice.",
    )
    release.add_argument(
        "--date",
        type=_date,
        help="local date (default: today); never after today, in the past only a missed or "
        "unfinished day",
    )
    prune = sub.add_parser(
        "prune-events",
        help="delete events older than the retention window (schedule daily)",
        description="Delete feed events older than --days (default GREENPOINTS_RULE_EVENT_"
        "RETENTION_DAYS, 30), oldest first in batches. Unread (unsequenced) events and the "
        "newest event always stay, so event ids are never handed out twice.",
    )
    prune.add_argument("--days", type=int, help="retention window in days")
    ver = sub.add_parser("verify", help="recompute hash chains and balances")
    ver.add_argument(
        "--partitions", type=_positive, default=1, help="passes, to bound memory (1 or more)"
    )
    ver.add_argument(
        "--against",
        metavar="FILE_OR_URL",
        help="a kept copy of the public record (GET /v1/public/pool): fail if the journal "
        "does not lead to the heads published in it",
    )
    circ = sub.add_parser(
        "circle-report", help="the 15-minute circle of each community in a CSV (name,lat,lon)"
    )
    circ.add_argument("file", type=Path)
    circ.add_argument("--format", choices=["csv", "text"], default="csv")
    circ.add_argument("--output", type=Path, help="write here instead of standard output")
    pub = sub.add_parser("publish", help="write the day's public record (the release does this)")
    pub.add_argument("--date", type=_date, help="local date (default: today)")
    st = sub.add_parser(
        "statement",
        help="a merchant's statement (对账单) for a month or a day",
        description="What the merchant owes (concessions on its purchases) and is owed "
        "(vouchers accepted, its points released into settlement), undos, the balance carried "
        "forward and the payout status. Amounts in yuan (text, CSV) or fen (JSON).",
    )
    st.add_argument("--merchant", type=int, required=True)
    span = st.add_mutually_exclusive_group()
    span.add_argument("--period", help="a local month (2026-11) or day (2026-11-05)")
    span.add_argument("--from", dest="first", type=_date, help="first local day (YYYY-MM-DD)")
    st.add_argument("--to", dest="last", type=_date, help="last local day (default: --from)")
    st.add_argument("--format", choices=["text", "csv", "json"], default="text")
    st.add_argument("--output", type=Path, help="write here (CSV with a BOM, for Excel)")
    pay = sub.add_parser(
        "payout",
        help="record that a merchant's settlement through a period was paid",
        description="Record the payout of everything the merchant was due (either way) up to "
        "the end of the period; the amount is the ledger's. Running it again for the same "
        "period answers with the first payout.",
    )
    pay.add_argument("--merchant", type=int, required=True)
    pay.add_argument("--period", required=True, help="a local month (2026-11) or day")
    pay.add_argument("--reference", default="", help="the bank transfer's number, or a note")
    pay.add_argument(
        "--key", help="idempotency key (default: one per merchant and period)"
    )
    refund = sub.add_parser(
        "refund", help="refund part or all of a purchase inside its points' hold (issue 11)"
    )
    refund.add_argument("--merchant", type=int, required=True)
    refund.add_argument("--purchase", type=int, required=True)
    refund.add_argument("--amount-fen", type=int, required=True)
    refund.add_argument("--key", required=True, help="idempotency key: the same key, once")
    refund.add_argument("--reason", default="")
    unusual = sub.add_parser(
        "unusual-volume", help="merchants whose day's purchase volume is far above their usual"
    )
    unusual.add_argument("--date", type=_date, help="local date (default: yesterday)")
    backup = sub.add_parser("backup", help="consistent copy of the SQLite database, while running")
    backup.add_argument("target", type=Path)
    return p


def _print(*lines: Any) -> None:
    for line in lines:
        print(line)


# Commands that act on a ledger that must already exist: on a mistyped SQLite path they would
# otherwise create an empty database and, for ``verify``, report it "ok".
NEEDS_EXISTING = frozenset(
    {"verify", "backup", "publish", "circle-report", "staff-list", "staff-revoke", "revoke-key",
     "prune-events", "release", "statement", "payout", "refund", "unusual-volume"}
)


def _missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file ``url`` names when it does not exist (None for PostgreSQL or a file)."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


async def _run(args: argparse.Namespace) -> int:
    url = url_from_env()
    missing = _missing_sqlite_file(url) if args.command in NEEDS_EXISTING else None
    if missing is not None:
        print(
            f"no ledger database at {missing} (GREENPOINTS_LEDGER_URL): nothing to "
            f"{args.command}; check the path, or create one with `greenpoints ledger migrate`",
            file=sys.stderr,
        )
        return 2
    service = await LedgerService.open(url, Rules())
    try:
        return await _dispatch(service, args)
    finally:
        await service.close()


async def _dispatch(service: LedgerService, args: argparse.Namespace) -> int:
    ctx = service.ctx
    if args.command == "serve":
        from ledger.api.http import serve

        await serve(service, args.host, args.port)
    elif args.command == "migrate":
        _print("database is at the newest schema")
    elif args.command == "seed-demo":
        report = await seed.seed_demo(service)
        stats = await service.stats(SYSTEM)
        _print(
            ("seeded" if report.created else "already seeded") + " the Lin'an demo alliance:",
            f"  merchants: {stats.merchants}",
            f"  members: {stats.members} (demo member id {report.demo_member_id})",
            f"  points in circulation: {stats.points_outstanding}",
            f"  points pool: {stats.pool_fen / 100:.2f} yuan",
            f"  point price: {stats.price.fen_per_point} fen per point (reported, not promised)",
            f"  vouchers outstanding: {stats.vouchers_outstanding_fen / 100:.2f} yuan",
        )
    elif args.command == "import-merchants":
        return await _import(service, args.file)
    elif args.command == "create-key":
        key = await apikeys.create(ctx, args.role, args.merchant, args.label)
        _print(key)
        print("store it now: only its hash is kept", file=sys.stderr)
    elif args.command == "revoke-key":
        key_id = args.id
        if key_id is None:
            given = sys.stdin.readline().strip() if args.key == "-" else args.key
            key_id = await apikeys.key_id(ctx, given)
        done = await apikeys.revoke(ctx, key_id)
        when = f"{done.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        _print(f"key {done.key_id} " + (f"was already revoked at {when}" if done.already
                                          else f"revoked at {when}"))
    elif args.command == "staff-invite":
        invite = await service.create_staff_invite(
            SYSTEM, args.merchant, args.role, store_id=args.store
        )
        merchant = await service.get_merchant(SYSTEM, args.merchant)
        at = f", store #{invite.store_id}" if invite.store_id else ""
        _print(
            f"{invite.role} invite for {merchant.name} (#{merchant.id}{at}), valid until "
            f"{invite.expires_at:%Y-%m-%d %H:%M} UTC:",
            invite.code,
        )
        if args.bot_username:
            link = f"https://t.me/{args.bot_username.lstrip('@')}?start={invite.code}"
            _print(link)
            if args.qr:
                import qrcode

                qrcode.make(link).save(args.qr)
                _print(f"QR written to {args.qr}")
    elif args.command == "add-store":
        place = StoreIn(
            name=args.name, address=args.address, lat=args.lat, lon=args.lon, hours=args.hours
        )
        added = await service.add_store(SYSTEM, args.merchant, place)
        _print(f"store #{added.id} {added.name} added to merchant #{added.merchant_id}")
    elif args.command == "list-stores":
        listed_stores = await service.list_stores(SYSTEM, args.merchant)
        for shop in listed_stores.stores:
            _print(f"#{shop.id}\t{shop.name}\t{shop.address}\t{shop.lat},{shop.lon}\t{shop.hours}")
        _print(f"{len(listed_stores.stores)} stores")
    elif args.command == "staff-list":
        listed = await service.list_staff(SYSTEM, args.merchant, include_revoked=args.all)
        for person in listed.staff:
            left = person.revoked_at
            gone = f"  revoked {left:%Y-%m-%d %H:%M} UTC" if left else ""
            at = f"  store #{person.store_id}" if person.store_id else ""
            _print(f"{person.role:8} {person.channel}:{person.external_id}{at}{gone}")
        _print(f"{len(listed.staff)} staff")
    elif args.command == "staff-revoke":
        target = RevokeStaffRequest(channel=args.channel, external_id=args.external_id)
        revoked = await service.revoke_staff(SYSTEM, args.merchant, target)
        assert revoked.revoked_at is not None
        _print(
            f"revoked {revoked.role} {revoked.channel}:{revoked.external_id} at "
            f"{revoked.revoked_at:%Y-%m-%d %H:%M} UTC; their next call is refused"
        )
    elif args.command == "release":
        result = await service.release(SYSTEM, args.date)
        _print(result.model_dump_json(indent=2))
    elif args.command == "refund":
        request = RefundRequest(
            merchant_id=args.merchant,
            amount_fen=args.amount_fen,
            idempotency_key=args.key,
            reason=args.reason,
        )
        refunded = await service.refund_purchase(SYSTEM, args.purchase, request)
        _print(refunded.model_dump_json(indent=2))
    elif args.command == "unusual-volume":
        found = await service.unusual_volume(SYSTEM, args.date)
        for m in found.merchants:
            _print(
                f"#{m.merchant_id} {m.name}: {m.day_fen / 100:.2f} yuan in {m.day_count}"
                f" purchases, usual day {m.median_fen / 100:.2f} yuan"
            )
        _print(f"{len(found.merchants)} merchants unusual on {found.date}")
    elif args.command == "prune-events":
        pruned = await service.prune_events(SYSTEM, args.days)
        _print(f"pruned {pruned} events")
    elif args.command == "circle-report":
        return await _circle_report(service, args.file, args.format, args.output)
    elif args.command == "publish":
        record = await service.publish(SYSTEM, args.date)
        _print(record.model_dump_json(indent=2))
    elif args.command == "verify":
        against = await published_heads.load(args.against) if args.against else []
        checked = await verify.verify(ctx, max(1, args.partitions), against)
        if checked.ok:
            anchored = sum(len(r.anchors) for r in against)
            _print(
                f"ok: {checked.entries} journal entries, {checked.accounts} accounts verified"
                + (f", {anchored} published heads matched" if against else "")
            )
            return 0
        for problem in checked.problems:
            print(f"FAIL: {problem}", file=sys.stderr)
        return 1
    elif args.command == "statement":
        return await _statement(service, args)
    elif args.command == "payout":
        req = PayoutRequest(
            period=args.period,
            # One default key per merchant, period and reference: the same command again is a
            # retry; another reference for a paid period is answered with that period's payout.
            idempotency_key=args.key
            or f"cli-payout-{args.merchant}-{args.period}-{_short_hash(args.reference)}",
            reference=args.reference,
        )
        paid = await service.payout(SYSTEM, args.merchant, req)
        direction = "paid to the merchant" if paid.amount_fen >= 0 else "paid by the merchant"
        _print(
            f"payout {paid.payout_id} of merchant {paid.merchant_id} for {paid.period}: "
            f"{statements.yuan(abs(paid.amount_fen))} yuan {direction}, recorded "
            f"{paid.paid_at:%Y-%m-%d %H:%M} UTC by {paid.paid_by}"
        )
    elif args.command == "backup":
        from ledger.backup import BackupRefused, backup

        try:
            await backup(ctx.db, args.target)
        except BackupRefused as exc:
            print(f"backup refused: {exc}", file=sys.stderr)
            return 2
        _print(f"backup written to {args.target}")
    return 0


async def _statement(service: LedgerService, args: argparse.Namespace) -> int:
    if args.last is not None and args.first is None:
        print("--to needs --from", file=sys.stderr)
        return 2
    if args.period:
        first, last = statements.parse_period(args.period)
    elif args.first:
        first, last = args.first, args.last or args.first
    else:
        last = service.ctx.today()
        first = last.replace(day=1)
    done = await service.statement(SYSTEM, args.merchant, first, last, label=args.period)
    if args.format == "json":
        text = done.model_dump_json(indent=2) + "\n"
    elif args.format == "csv":
        text = statements.to_csv(done)
    else:
        text = statements.to_text(done)
    if args.output:
        bom = "\ufeff" if args.format == "csv" else ""
        args.output.write_text(bom + text, encoding="utf-8", newline="")
        _print(f"statement written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


async def _import(service: LedgerService, path: Path) -> int:
    from tqdm import tqdm

    try:
        text, encoding = csv_text.decode(await asyncio.to_thread(path.read_bytes))
    except csv_text.CsvEncodingError as exc:
        print(f"cannot import {path}: nothing was imported: {exc}", file=sys.stderr)
        return 2
    total = max(0, sum(1 for _ in io.StringIO(text, newline="")) - 1)
    with tqdm(total=total, unit="row", desc="merchants", file=sys.stderr) as bar:
        try:
            report = await importer.import_csv(
                service.ctx, io.StringIO(text, newline=""), bar.update
            )
        except ValueError as exc:
            print(f"cannot import {path}: {exc}", file=sys.stderr)
            return 2
    if encoding not in ("utf-8", "utf-8-sig"):
        print(f"read {path} as {encoding}", file=sys.stderr)
    for line, problem in report.skipped:
        print(f"line {line}: skipped: {problem}", file=sys.stderr)
    stores = f", {report.stores} stores" if report.stores else ""
    _print(f"imported {report.imported} merchants{stores}, skipped {len(report.skipped)} rows")
    return 0


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def _circle_report(service: LedgerService, path: Path, form: str, output: Path | None) -> int:
    from tqdm import tqdm

    from ledger import circle, circle_report

    rules = circle.CircleRules()
    skipped: list[tuple[int, str]] = []
    try:  # the encodings spreadsheets here write, as import-merchants reads them (issue 11)
        text, _encoding = csv_text.decode(await asyncio.to_thread(path.read_bytes))
    except csv_text.CsvEncodingError as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return 2
    total = max(0, sum(1 for _ in io.StringIO(text, newline="")) - 1)
    with tqdm(total=total, unit="place", desc="circles", file=sys.stderr) as bar:
        try:
            communities = list(
                circle_report.read_communities(io.StringIO(text, newline=""), skipped)
            )
        except ValueError as exc:
            print(f"cannot read {path}: {exc}", file=sys.stderr)
            return 2
        bar.update(len(skipped))
        rows = await circle_report.reports(service.ctx, communities, rules, bar.update)
    for line, problem in skipped:
        print(f"line {line}: skipped: {problem}", file=sys.stderr)
    out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        if form == "csv":
            circle_report.write_csv(out, rows, rules)
        else:
            circle_report.write_text(out, rows)
    finally:
        if output:
            out.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command in ("import-merchants", "circle-report") and not args.file.is_file():
        print(f"no such file: {args.file}", file=sys.stderr)
        return 2
    observability.configure_logging(logging.INFO if args.command == "serve" else logging.WARNING)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `greenpoints ledger staff-list … | head`: the reader has enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (LedgerError, ValueError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
