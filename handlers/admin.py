"""Admins: /broadcast (compose, audience, preview, confirm), /broadcasts, /stats.

Admin powers are checked on every update against ``GREENPOINTS_ADMIN_IDS``, buttons included,
so a forwarded or stale button does nothing for anyone else.
"""

from __future__ import annotations

import datetime as dt
import secrets

from bot.chat import choice_data, formatting
from bot.chat.announcements import (
    EVERYONE,
    MASS_SENDS_PER_MONTH,
    Progress,
    progress_text,
    wechat_line,
)
from bot.chat.cleaning import clean_text
from bot.chat.events import Choice, Command, Event, Photo, Text
from bot.chat.flows import Pending
from bot.chat.i18n import N_, Translator
from bot.chat.replies import ChoiceButton, Picture, TextReply, Toast
from bot.chat.router import Router
from bot.chat.turn import Turn
from handlers.balance import price_text

COMPOSE = "broadcast"
AUDIENCE = "bca"
SEND = "bcs"
STOP = "bcx"
TTL = dt.timedelta(minutes=30)
MAX_TEXT = 4096
MAX_CAPTION = 1024
AUDIENCES = {
    EVERYONE: N_("Everyone"),
    "zh_Hans": N_("简体中文 readers"),
    "zh_Hant": N_("繁體中文 readers"),
    "en": N_("English readers"),
}
STATES = {
    "enqueuing": N_("adding recipients"),
    "sending": N_("sending"),
    "done": N_("finished"),
    "cancelled": N_("cancelled"),
}


def refused(t: Translator) -> str:
    return t._("Sorry, that is only for alliance administrators.")


def _is_admin(turn: Turn) -> bool:
    return turn.services.is_admin(turn.profile.key)


def _refuse(event: Event, turn: Turn) -> None:
    """Everyone but an admin is told politely (a button gets an alert)."""
    if isinstance(event, Choice):
        turn.say(Toast(refused(turn.t), alert=True))
    else:
        turn.text(refused(turn.t))


async def broadcast(event: Command, turn: Turn) -> None:
    if not _is_admin(turn):
        _refuse(event, turn)
        return
    await turn.services.flows.start(turn.profile.key, COMPOSE, {"step": "content"}, TTL)
    turn.text(
        turn.t._("Send me the announcement: a text, or one photo with a caption. /cancel stops.")
    )


async def _on_content(event: Text | Photo, turn: Turn, pending: Pending) -> None:
    t = turn.t
    chat = turn.profile.key
    if not _is_admin(turn):
        await turn.services.flows.finish(chat, COMPOSE)
        turn.text(refused(t))
        return
    if pending.data.get("step") != "content":
        turn.text(t._("Choose the audience with the buttons above, or /cancel."))
        return
    photo = event.file_ref if isinstance(event, Photo) else None
    # A NUL shows as nothing anywhere, and PostgreSQL cannot store it: the announcement would
    # fail only when Send is tapped, after the admin approved it.
    raw = event.caption if isinstance(event, Photo) else event.text
    # Everyone reads it: control and bidi-format characters (a U+202E that reverses the rest)
    # go, as in every text one person writes for others (DESIGN.md "The conversation core").
    text = clean_text(raw or "")
    limit = MAX_CAPTION if photo else MAX_TEXT
    if not text.strip() or len(text) > limit or (isinstance(event, Photo) and photo is None):
        turn.text(
            t._("An announcement needs text of at most {limit} characters. Try again.").format(
                limit=limit
            )
        )
        return
    nonce = secrets.token_hex(4)
    await turn.services.flows.start(
        chat, COMPOSE, {"step": "audience", "text": text, "photo": photo, "nonce": nonce}, TTL
    )
    counts = await turn.services.broadcasts.audience_sizes()
    turn.text(
        t._("Who should get it?"),
        [
            [
                ChoiceButton(
                    f"{t._(label)} ({formatting.number(t, counts.get(code, 0))})",
                    choice_data.pack(AUDIENCE, code, nonce),
                )
            ]
            for code, label in AUDIENCES.items()
        ],
    )


async def _tapped(
    turn: Turn, event: Choice, prefix: str, choices: set[str], step: str
) -> tuple[str, Pending] | None:
    """The choice a composer's button carries, if it belongs to the step the composer is at.

    A button from an older composition (its nonce), from an earlier step, or forged, is
    answered as expired and yields None.
    """
    parts = choice_data.unpack(event.data, prefix, 2)
    pending = await turn.services.flows.get(turn.profile.key)
    if (
        parts is None
        or parts[0] not in choices
        or pending is None
        or pending.kind != COMPOSE
        or pending.data.get("nonce") != parts[1]
        or pending.data.get("step") != step
    ):
        turn.say(Toast(turn.t._("This button has expired.")))
        return None
    return parts[0], pending


async def choose_audience(event: Choice, turn: Turn) -> None:
    if not _is_admin(turn):
        _refuse(event, turn)
        return
    t = turn.t
    chat = turn.profile.key
    tapped = await _tapped(turn, event, AUDIENCE, set(AUDIENCES), "audience")
    if tapped is None:
        return
    audience, pending = tapped
    size = await turn.services.broadcasts.audience_size(audience)
    data = {**pending.data, "step": "confirm", "audience": audience}
    await turn.services.flows.start(chat, COMPOSE, data, TTL)
    turn.text(t._("Here is exactly what they will see:"), replaces=True)
    if data["photo"]:
        turn.say(Picture(b"", data["text"], data["text"], file_ref=data["photo"]))
    else:
        turn.say(TextReply(data["text"]))
    turn.text(
        t.ngettext(
            "Send this announcement to {count} person ({audience})?",
            "Send this announcement to {count} people ({audience})?",
            size,
        ).format(
            count=formatting.number(t, size), audience=t._(AUDIENCES[audience])
        )
        + await _wechat_preview(turn, audience),
        [
            [
                ChoiceButton(t._("Send"), choice_data.pack(SEND, "ok", data["nonce"])),
                ChoiceButton(t._("Cancel"), choice_data.pack(SEND, "no", data["nonce"])),
            ]
        ],
    )


async def _wechat_preview(turn: Turn, audience: str) -> str:
    """What WeChat followers will get, said before Send (WECHAT.md rule 5: a mass send, at
    most 4 a month): empty when the bot knows no WeChat follower."""
    t, broadcasts = turn.t, turn.services.broadcasts
    followers = await broadcasts.wechat_followers(EVERYONE)
    if not followers:
        return ""
    if audience != EVERYONE:
        return "\n" + t._(
            "WeChat followers get announcements to everyone only (one mass send reaches them all)."
        )
    left = await broadcasts.mass_sends_left()
    if not left:
        return "\n" + t._(
            "WeChat: this month's {limit} mass sends are used, so WeChat followers will not "
            "get this one."
        ).format(limit=MASS_SENDS_PER_MONTH)
    return "\n" + t.ngettext(
        "WeChat: {count} follower gets it as a mass send ({left} of {limit} left this month).",
        "WeChat: {count} followers get it as a mass send ({left} of {limit} left this month).",
        followers,
    ).format(
        count=formatting.number(t, followers), left=left, limit=MASS_SENDS_PER_MONTH
    )


async def confirm(event: Choice, turn: Turn) -> None:
    if not _is_admin(turn):
        _refuse(event, turn)
        return
    t = turn.t
    chat = turn.profile.key
    tapped = await _tapped(turn, event, SEND, {"ok", "no"}, "confirm")
    if tapped is None:
        return
    choice, pending = tapped
    # Finishing the flow first makes a double tap on Send start one broadcast, not two.
    if not await turn.services.flows.finish(chat, COMPOSE):
        turn.say(Toast(t._("This button has expired.")))
        return
    if choice == "no":
        turn.text(t._("Cancelled; nothing was sent."), replaces=True)
        return
    data = pending.data
    broadcasts = turn.services.broadcasts
    broadcast_id = await broadcasts.create(chat, data["text"], data["photo"], data["audience"])
    # Enqueueing starts before the admin sees the progress message: whoever sees it (a test's
    # settle, too) can count on the audience being on its way into the outbox.
    if turn.services.announcer is not None:
        turn.services.announcer.launch(broadcast_id)
    progress = await broadcasts.progress(broadcast_id)
    assert progress is not None
    turn.text(progress_text(t, progress), replaces=True)
    # The tapped message becomes the progress message the runner keeps up to date.
    if event.message_id is not None:
        await broadcasts.set_progress_message(broadcast_id, event.message_id)


async def cancel_compose(event: Command, turn: Turn) -> None:
    if await turn.services.flows.finish(turn.profile.key):
        turn.text(turn.t._("Cancelled."))
    else:
        turn.text(turn.t._("There is nothing to cancel."))


def _line(t: Translator, p: Progress) -> str:
    wechat = wechat_line(t, p.wechat)
    return _counts_line(t, p) + (f"\n   {wechat}" if wechat else "")


def _counts_line(t: Translator, p: Progress) -> str:
    return t._(
        "#{id} · {state} · {sent}/{total} sent · {blocked} blocked · {failed} failed\n   {preview}"
    ).format(
        id=p.id,
        state=t._(STATES.get(p.state, p.state)),
        sent=formatting.number(t, p.sent),
        total=formatting.number(t, p.total),
        blocked=formatting.number(t, p.blocked),
        failed=formatting.number(t, p.failed),
        preview=p.text[:60].replace("\n", " "),
    )


async def list_broadcasts(event: Command, turn: Turn) -> None:
    if not _is_admin(turn):
        _refuse(event, turn)
        return
    t = turn.t
    recent = await turn.services.broadcasts.recent()
    if not recent:
        turn.text(t._("No announcements yet. /broadcast starts one."))
        return
    running = [p for p in recent if p.state in {"enqueuing", "sending"}]
    turn.text(
        "\n".join([t._("Recent announcements:")] + [_line(t, p) for p in recent]),
        [
            [ChoiceButton(t._("Cancel #{id}").format(id=p.id), choice_data.pack(STOP, p.id))]
            for p in running
        ],
    )


async def stop_broadcast(event: Choice, turn: Turn) -> None:
    if not _is_admin(turn):
        _refuse(event, turn)
        return
    t = turn.t
    parts = choice_data.unpack(event.data, STOP, 1)
    broadcast_id = choice_data.as_int(parts[0], 1, 2**62) if parts else None
    if broadcast_id is None:
        turn.say(Toast(t._("This button has expired.")))
        return
    broadcasts = turn.services.broadcasts
    if not await broadcasts.cancel(broadcast_id):
        turn.say(Toast(t._("That announcement is not running."), alert=True))
        return
    turn.say(Toast(t._("Cancelled.")))
    progress = await broadcasts.progress(broadcast_id)
    if progress is not None and turn.services.announcer is not None:
        await turn.services.announcer.show(progress)


async def stats(event: Command, turn: Turn) -> None:
    if not _is_admin(turn):
        _refuse(event, turn)
        return
    t = turn.t
    figures = await turn.services.ledger.stats()
    lines = [
        t._("Alliance figures"),
        t._("Members: {n}").format(n=formatting.number(t, figures.members)),
        t._("Active in the last 7 days: {n}").format(n=formatting.number(t, figures.active_7d)),
        t._("Alliance merchants: {n}").format(n=formatting.number(t, figures.merchants)),
        t._("Points outstanding: {n}").format(n=formatting.number(t, figures.points_outstanding)),
        t._("Vouchers outstanding: {amount}").format(
            amount=formatting.money(t, figures.vouchers_outstanding_fen)
        ),
        t._("Points pool: {amount}").format(amount=formatting.money(t, figures.pool_fen)),
        t._("Point price: {price} per point").format(price=price_text(t, figures.price)),
    ]
    turn.text("\n".join(lines))


def routes(router: Router) -> None:
    router.command("broadcast", broadcast)
    router.command("broadcasts", list_broadcasts)
    router.command("stats", stats)
    router.command("cancel", cancel_compose)
    router.choice(AUDIENCE, choose_audience)
    router.choice(SEND, confirm)
    router.choice(STOP, stop_broadcast)
    router.state(COMPOSE, _on_content)
