"""The bot's tables. SQLite by default, PostgreSQL by URL; the same models on both."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class Chat(Base):
    """One person's private chat with the bot, keyed by (channel, address): the address is the
    channel's own id for the person as a string (Telegram's private chat id in decimal, a WeChat
    openid), so every channel's people live in one table (issue 9)."""

    __tablename__ = "chats"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    locale: Mapped[str] = mapped_column(String(16))
    locale_chosen: Mapped[bool] = mapped_column(Boolean, default=False)
    display_name: Mapped[str | None] = mapped_column(String(64))
    notices: Mapped[bool] = mapped_column(Boolean, default=True)
    # The voucher digest's period: daily|weekly|off; None follows GREENPOINTS_NOTICE_DIGEST_DEFAULT.
    digest: Mapped[str | None] = mapped_column(String(8))
    # The person's IANA zone where the bot knows it (quiet hours, digest days); None: the
    # alliance's GREENPOINTS_TIMEZONE.
    timezone: Mapped[str | None] = mapped_column(String(64))
    blocked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_lat_e6: Mapped[int | None] = mapped_column(Integer)
    last_lon_e6: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)

    __table_args__ = (Index("ix_chats_locale_address", "locale", "channel", "address"),)


class OutboxMessage(Base):
    """Something the bot says on its own; sent by the one sender, at the platform's pace.

    ``priority`` 0 (receipts) goes before 1 (expiry warnings), 2 (voucher digests) and 3
    (broadcasts), so a 12-million-recipient announcement never delays someone's receipt, and
    when not everything can go today the receipts go first (issue 12).

    Notices are stored neutral (``method`` ``notice``, ``payload`` ``{"kind", "fields"}``) and
    rendered by the person's channel when sent (issue 9). A row ``held`` waits to be gathered
    with others of its person into one message (a digest); it then ends ``gathered``.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    broadcast_id: Mapped[int | None] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[dt.datetime] = mapped_column(DateTime)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_outbox_due", "channel", "state", "priority", "id"),
        Index("ix_outbox_broadcast_state", "broadcast_id", "state"),
        # Held rows only (partial): which are due, and each person's (issue 12's digests).
        Index(
            "ix_outbox_held_due",
            "not_before",
            sqlite_where=text("state = 'held'"),
            postgresql_where=text("state = 'held'"),
        ),
        Index(
            "ix_outbox_held_chat",
            "channel",
            "address",
            sqlite_where=text("state = 'held'"),
            postgresql_where=text("state = 'held'"),
        ),
        Index("ix_outbox_created_at", "created_at"),  # pruning by age
    )


class Broadcast(Base):
    """An announcement and how far its sending got; the cursors make restarts resume."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    admin_channel: Mapped[str] = mapped_column(String(16))
    admin_address: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    photo: Mapped[str | None] = mapped_column(String(200))
    audience: Mapped[str] = mapped_column(String(16))  # "all" or a locale
    state: Mapped[str] = mapped_column(String(12))  # draft|enqueuing|sending|done|cancelled
    total: Mapped[int] = mapped_column(BigInteger, default=0)  # the audience, blocked included
    # Outcomes, counted as they happen (the sender adds to these with each batch of results),
    # so progress never needs a count over millions of outbox rows.
    sent: Mapped[int] = mapped_column(BigInteger, default=0)
    blocked: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped: Mapped[int] = mapped_column(BigInteger, default=0)  # cancelled, or notices off
    # The last chat enqueued, in (channel, address) order; ("", "") before the first.
    enqueue_channel: Mapped[str] = mapped_column(String(16), default="")
    enqueue_address: Mapped[str] = mapped_column(String(64), default="")
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Flow(Base):
    """A conversation waiting for the person's next message (a bill amount, an announcement)."""

    __tablename__ = "flows"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Cursor(Base):
    """Named positions, such as how far into the ledger's event feed the bot has read."""

    __tablename__ = "cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


# --- WeChat Official Account channel (issue 10; rules in shared/WECHAT.md) -----------------


class WeChatDelivery(Base):
    """One inbound WeChat delivery, claimed once across every bot process (WECHAT.md rule 1).

    ``key`` is the SHA-256 hex of FromUserName + (MsgId, or CreateTime + Event + EventKey):
    WeChat retries a request up to three times and a retry may reach another process, and MsgId
    alone or FromUserName + CreateTime alone have both collided in practice. ``reply`` keeps the
    passive reply (plain XML) so a retry after a lost answer gets the same one.
    """

    __tablename__ = "wechat_deliveries"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12))  # processing|retried|done
    reply: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class WeChatToken(Base):
    """The one access_token every process uses (WECHAT.md rule 4: one shared cache)."""

    __tablename__ = "wechat_tokens"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_token: Mapped[str] = mapped_column(String(1024))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    fetched_at: Mapped[dt.datetime] = mapped_column(DateTime)


class WeChatWindow(Base):
    """The customer-service windows a person opened, and what we sent in each (rule 2).

    A message opens 5 sends in 48 h; a click, scan or follow 3 sends in 1 minute. Counted here,
    in the shared database, so no process sends outside a window or over its count.
    """

    __tablename__ = "wechat_windows"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    message_sent: Mapped[int] = mapped_column(Integer, default=0)
    event_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    event_sent: Mapped[int] = mapped_column(Integer, default=0)
    unfollowed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class WeChatChoice(Base):
    """The choices last offered in a chat by label, for taps that arrive without a menu id."""

    __tablename__ = "wechat_choices"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(128), primary_key=True)
    data: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class WeChatTemplateSend(Base):
    """A template message sent, and its delivery result from ``TEMPLATESENDJOBFINISH``."""

    __tablename__ = "wechat_template_sends"

    msg_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    openid: Mapped[str] = mapped_column(String(64))
    template_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(40))  # sent, or the event's Status
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class WeChatMassSend(Base):
    """An announcement as a mass send; ``client_msg_id`` makes a re-run send nothing twice.

    ``broadcast_id`` is the announcement it carries to WeChat followers (None for one made
    otherwise); the ``*_count`` columns and ``job_status`` are WeChat's MASSSENDJOBFINISH report
    (people in the audience, after the platform's filter, reached, failed), None until it comes.
    """

    __tablename__ = "wechat_mass_sends"

    client_msg_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM (Beijing time)
    state: Mapped[str] = mapped_column(String(12))  # sending|sent|failed
    msg_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    broadcast_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    job_status: Mapped[str | None] = mapped_column(String(40))
    total_count: Mapped[int | None] = mapped_column(Integer)
    filter_count: Mapped[int | None] = mapped_column(Integer)
    sent_count: Mapped[int | None] = mapped_column(Integer)
    error_count: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


# --- Linked identities (issue 10: one member on WeChat and Telegram) --------------------------


class LinkCode(Base):
    """A one-time code a person asked for on one channel, to type on the other (issue 10).

    ``code_hash`` is the SHA-256 hex of the digits, so the table never shows a usable code.
    ``used_at`` and who used it are set when a person claims the code; a claim whose ledger call
    failed is released again. The issuer's chat holds at most one code: asking again replaces it.
    """

    __tablename__ = "link_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    used_channel: Mapped[str | None] = mapped_column(String(16))
    used_address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_link_codes_issuer", "channel", "address"),)


class LinkAttempt(Base):
    """Wrong link codes a chat typed in its current window, so guessing is throttled."""

    __tablename__ = "link_attempts"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime)
    failures: Mapped[int] = mapped_column(Integer)


class NoticeChannel(Base):
    """Which of a linked member's channels their notices go to (the person's choice)."""

    __tablename__ = "notice_channels"

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    channel: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class WeChatUserTag(Base):
    """The one role x language tag a WeChat follower carries now (WECHAT.md rule 8), so a
    change of role or language untags the old one and tags the new one."""

    __tablename__ = "wechat_user_tags"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    tag_id: Mapped[int] = mapped_column(Integer)
    tagged_at: Mapped[dt.datetime] = mapped_column(DateTime)
