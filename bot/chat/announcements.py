"""Announcements as admins see them: who they go to, how far along they are, and what moves them.

The rows and the batched enqueueing are ``bot.outbox.broadcasts``'s and the sending is the
outbox's; the /broadcast feature speaks of an announcement only in these terms.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from bot.chat import formatting
from bot.chat.i18n import Translator
from bot.storage.chats import utcnow

EVERYONE = "all"
"""The audience of every person with notices on (otherwise an audience is a locale)."""
MASS_SENDS_PER_MONTH = 4
"""Mass sends a WeChat 服务号 follower receives at most a month (WECHAT.md rule 5): on WeChat an
announcement to everyone is one mass send (``bot.outbox.mass_sends``)."""
MONTH_USED = "month used"  # the error kept when the month's limit refused a mass send


@dataclass(frozen=True)
class MassReport:
    """A broadcast's mass send: ``state`` sending|sent|failed, WeChat's ``msg_id``, and the
    MASSSENDJOBFINISH figures (people) once WeChat reported them."""

    state: str
    msg_id: int | None
    error: str | None
    job_status: str | None
    total: int | None
    filtered: int | None
    sent: int | None
    errors: int | None

    @property
    def refused_for_month(self) -> bool:
        return self.state == "failed" and self.error == MONTH_USED

    @property
    def finished(self) -> bool:
        return self.job_status is not None




@dataclass(frozen=True)
class Progress:
    id: int
    state: str
    audience: str
    total: int
    sent: int
    blocked: int
    failed: int
    skipped: int
    enqueued_all: bool
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    admin: tuple[str, str]  # (channel, address) of the admin who sent it
    progress_message_id: int | None
    text: str
    wechat: MassReport | None = None  # the mass send to WeChat followers, once it started

    @property
    def settled(self) -> int:
        """Recipients with an outcome; equals ``total`` once the broadcast is over."""
        return self.sent + self.blocked + self.failed + self.skipped

    def rate(self, now: dt.datetime) -> float:
        """Messages a second since the start, over what was actually sent."""
        if self.started_at is None:
            return 0.0
        seconds = ((self.finished_at or now) - self.started_at).total_seconds()
        return self.sent / seconds if seconds > 0 else 0.0

    def seconds_left(self, now: dt.datetime) -> float | None:
        rate = self.rate(now)
        left = self.total - self.settled
        return left / rate if rate > 0 and left > 0 else (0.0 if left <= 0 else None)


def wechat_line(t: Translator, report: MassReport | None) -> str | None:
    """How the announcement's WeChat mass send went, for the admin; None without one."""
    if report is None:
        return None
    if report.refused_for_month:
        return t._("WeChat: refused, this month's {limit} mass sends are used.").format(
            limit=MASS_SENDS_PER_MONTH
        )
    if report.state == "failed":
        return t._("WeChat: the mass send failed ({error}).").format(error=report.error or "?")
    if report.state == "sending":
        return t._("WeChat: being sent as a mass send…")
    if not report.finished or report.total is None:
        return t._("WeChat: mass send {msg_id} accepted; waiting for WeChat's report.").format(
            msg_id=report.msg_id
        )
    return t.ngettext(
        "WeChat: {sent} of {total} follower received it, {errors} failed (mass send {msg_id}).",
        "WeChat: {sent} of {total} followers received it, {errors} failed (mass send {msg_id}).",
        report.total,
    ).format(
        sent=formatting.number(t, report.sent or 0),
        total=formatting.number(t, report.total),
        errors=formatting.number(t, report.errors or 0),
        msg_id=report.msg_id,
    )


def progress_text(t: Translator, p: Progress) -> str:
    """The admin's progress message: the per-person sending, then WeChat's mass send."""
    return "\n".join(filter(None, [_progress_text(t, p), wechat_line(t, p.wechat)]))


def _progress_text(t: Translator, p: Progress) -> str:
    now = utcnow()
    counts = t._("Sent {sent} / {total} · blocked {blocked} · failed {failed}").format(
        sent=formatting.number(t, p.sent),
        total=formatting.number(t, p.total),
        blocked=formatting.number(t, p.blocked),
        failed=formatting.number(t, p.failed),
    )
    if p.state == "done":
        lines = [t._("✅ Announcement #{id} finished.").format(id=p.id), counts]
        if p.skipped:
            lines.append(t._("Not sent: {count}").format(count=formatting.number(t, p.skipped)))
        return "\n".join(lines)
    if p.state == "cancelled":
        return "\n".join(
            [
                t._("⛔ Announcement #{id} cancelled.").format(id=p.id),
                counts,
                t._("Not sent: {count}").format(count=formatting.number(t, p.skipped)),
            ]
        )
    rate = p.rate(now)
    left = p.seconds_left(now)
    lines = [
        t._("📣 Announcement #{id} is being sent.").format(id=p.id),
        counts,
        t._("{rate} messages/s").format(rate=formatting.number(t, f"{rate:.1f}")),
    ]
    if not p.enqueued_all:
        lines.append(t._("Still adding recipients…"))
    elif left is not None:
        lines.append(t._("About {minutes} min left").format(minutes=max(1, round(left / 60))))
    return "\n".join(lines)


class Announcer(Protocol):
    """Moves announcements along: ``launch`` enqueues one's audience in the background;
    ``show`` redraws its progress message now."""

    def launch(self, broadcast_id: int) -> None: ...

    async def show(self, progress: Progress) -> None: ...
