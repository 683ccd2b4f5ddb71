"""The WeChat channel's settings (``GREENPOINTS_WECHAT_*``, issue 10), checked at start-up.

A missing or malformed setting stops start-up with one line naming it (``SettingsError``), as
the bot's other settings do; the values are checked against the shapes the platform issues, so
a secret pasted into the wrong variable is caught before WeChat refuses it.
"""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.channels.wechat.api import DEFAULT_BASE_URL
from bot.config import SettingsError

NOTICE_TEMPLATES = {
    "points.earned": "template_points_earned",
    "voucher.granted": "template_voucher_granted",
    "voucher.expiring": "template_voucher_expiring",
    "voucher.redeemed": "template_voucher_redeemed",
    "redemption.receipt": "template_redemption_receipt",
    "voucher.redemption_undone": "template_redemption_undone",  # issue 11
    "staff.revoked": "template_staff_revoked",  # issue 11
}


class WeChatSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GREENPOINTS_WECHAT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    app_id: str = Field(pattern=r"^wx[0-9a-f]{16}$")
    app_secret: SecretStr
    token: SecretStr
    aes_key: SecretStr | None = None  # set: safe mode (安全模式)
    api_url: str = DEFAULT_BASE_URL
    listen: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    deadline_seconds: float = Field(4.5, gt=0, lt=5)  # WeChat waits 5 s
    template_points_earned: str | None = None
    template_voucher_granted: str | None = None
    template_voucher_expiring: str | None = None
    template_voucher_redeemed: str | None = None
    template_redemption_receipt: str | None = None
    template_redemption_undone: str | None = None
    template_staff_revoked: str | None = None

    @field_validator("app_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not re.fullmatch(r"[0-9a-f]{32}", value.get_secret_value()):
            raise ValueError("must be the 32-character AppSecret")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not re.fullmatch(r"[A-Za-z0-9]{3,32}", value.get_secret_value()):
            raise ValueError("must be 3 to 32 letters or digits, as entered in 基本配置")
        return value

    @field_validator("aes_key")
    @classmethod
    def _aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]{43}", value.get_secret_value()):
            raise ValueError("must be the 43-character EncodingAESKey")
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    def template_for(self, kind: str) -> str | None:
        """The template id configured for a notice kind; None: that notice is not sent."""
        name = NOTICE_TEMPLATES.get(kind)
        return getattr(self, name) if name else None

    def secrets(self) -> list[str]:
        """Values to redact from logs."""
        values = (self.app_secret, self.token, self.aes_key)
        return [v.get_secret_value() for v in values if v is not None]


def load_wechat_settings(**overrides: object) -> WeChatSettings:
    """Settings from the environment, or a ``SettingsError`` with one readable line."""
    try:
        return WeChatSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"]) or "settings"
        message = "is not set" if first["type"] == "missing" else first["msg"]
        raise SettingsError(f"GREENPOINTS_WECHAT_{where.upper()}: {message}") from None
