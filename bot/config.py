"""The bot's settings, from the environment and an optional ``.env`` file.

A missing or malformed setting stops start-up with one line naming it, never a traceback.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_LEDGER_URL = "sqlite:///greenpoints-ledger.db"
DEFAULT_DATABASE_URL = "sqlite:///greenpoints-bot.db"


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GREENPOINTS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    telegram_token: SecretStr | None = None
    telegram_api_url: str | None = None  # e.g. http://127.0.0.1:8081 (self-hosted or test)
    ledger_url: str = DEFAULT_LEDGER_URL
    ledger_api_key: SecretStr | None = None
    database_url: str = DEFAULT_DATABASE_URL
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    # WeChat admins by openid (the account's own ids for its followers; issue 10).
    wechat_admin_openids: Annotated[frozenset[str], NoDecode] = frozenset()
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = Field(8443, ge=1, le=65535)
    # /healthz and /metrics: on the webhook's server in webhook mode, here when polling (0: off).
    web_host: str = "127.0.0.1"
    web_port: int = Field(8088, ge=0, le=65535)
    rate_overall: float = Field(30.0, gt=0, le=100_000)  # messages per second, all chats
    rate_per_chat: float = Field(1.0, gt=0, le=1000)  # messages per second, one chat
    event_poll_seconds: float = Field(2.0, gt=0, le=3600)
    bot_username: str | None = None  # learnt from getMe when not set
    timezone: str = "Asia/Shanghai"
    # Notice policy (issue 12): the voucher digest's period where a member chose none, the
    # local quiet hours nothing non-urgent is sent in, and how long ended outbox rows are kept.
    notice_digest_default: Literal["daily", "weekly", "off"] = "weekly"
    quiet_hours: str = "21:00-08:00"
    outbox_retention_days: int = Field(14, ge=1, le=3650)
    log_format: Literal["text", "json"] = "text"
    log_json: bool = False  # the older switch, shared with the ledger: same as log_format=json
    log_level: str = "INFO"

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
            try:
                return frozenset(int(p) for p in parts)
            except ValueError:
                raise ValueError("must be Telegram user ids separated by commas") from None
        return value

    @field_validator("wechat_admin_openids", mode="before")
    @classmethod
    def _split_openids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
            if any(not p.replace("-", "").replace("_", "").isalnum() or len(p) > 64 for p in parts):
                raise ValueError("must be WeChat openids separated by commas")
            return frozenset(parts)
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        from bot.outbox.policy import QuietHours

        QuietHours.parse(value)  # raises ValueError with the rule
        return value.strip()

    @field_validator("notice_digest_default", mode="before")
    @classmethod
    def _period(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("telegram_api_url", "webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.ledger_url.startswith(("http://", "https://")) and not self.ledger_api_key:
            raise ValueError("GREENPOINTS_LEDGER_API_KEY is needed for an http(s) ledger URL")
        return self

    @property
    def remote_ledger(self) -> bool:
        return self.ledger_url.startswith(("http://", "https://"))

    @property
    def json_logs(self) -> bool:
        return self.log_format == "json" or self.log_json

    def secrets(self) -> list[str]:
        """The configured secrets, which the log redactor removes wherever they appear."""
        values = (self.telegram_token, self.ledger_api_key, self.webhook_secret)
        return [v.get_secret_value() for v in values if v is not None]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or a ``SettingsError`` with one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"]) or "settings"
        name = f"GREENPOINTS_{where.upper()}" if where != "settings" else "settings"
        raise SettingsError(f"{name}: {first['msg']}") from None


def require_token(settings: Settings) -> str:
    if settings.telegram_token is None or not settings.telegram_token.get_secret_value():
        raise SettingsError(
            "GREENPOINTS_TELEGRAM_TOKEN is not set (talk to @BotFather for one, "
            "or try `greenpoints demo`, which needs none)"
        )
    token = settings.telegram_token.get_secret_value()
    if ":" not in token:
        raise SettingsError("GREENPOINTS_TELEGRAM_TOKEN does not look like a bot token")
    return token
