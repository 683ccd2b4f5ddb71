"""WeChat settings stop start-up with one clear line; notices become template fields."""

from __future__ import annotations

import pytest

from bot.channels.wechat.notices import template_data, yuan
from bot.channels.wechat.settings import load_wechat_settings
from bot.chat.replies import Notice
from bot.config import SettingsError

GOOD = {
    "app_id": "wx0123456789abcdef",
    "app_secret": "0123456789abcdef0123456789abcdef",
    "token": "greenpoints2026",
    "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("APP_ID", "APP_SECRET", "TOKEN", "AES_KEY", "API_URL", "PORT"):
        monkeypatch.delenv(f"GREENPOINTS_WECHAT_{name}", raising=False)
    monkeypatch.chdir(str(tmp_path))  # no stray .env


def test_good_settings_load_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GOOD.items():
        monkeypatch.setenv(f"GREENPOINTS_WECHAT_{name.upper()}", value)
    monkeypatch.setenv("GREENPOINTS_WECHAT_TEMPLATE_REDEMPTION_RECEIPT", "TPL-r")
    settings = load_wechat_settings()
    assert settings.api_url == "https://api.weixin.qq.com"
    assert settings.template_for("redemption.receipt") == "TPL-r"
    assert settings.template_for("points.earned") is None
    assert set(settings.secrets()) == {GOOD["app_secret"], GOOD["token"], GOOD["aes_key"]}


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ({"app_id": None}, "GREENPOINTS_WECHAT_APP_ID: is not set"),
        ({"app_id": "gh_123"}, "GREENPOINTS_WECHAT_APP_ID: String should match pattern"),
        ({"app_secret": "short"}, "GREENPOINTS_WECHAT_APP_SECRET: Value error, must be the 32"),
        ({"token": "has space"}, "GREENPOINTS_WECHAT_TOKEN: Value error, must be 3 to 32"),
        ({"aes_key": "x" * 42}, "GREENPOINTS_WECHAT_AES_KEY: Value error, must be the 43"),
        ({"api_url": "ftp://x"}, "GREENPOINTS_WECHAT_API_URL: Value error, must be an http"),
        ({"port": 0}, "GREENPOINTS_WECHAT_PORT: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(override: dict[str, object], line: str) -> None:
    values = {k: v for k, v in (GOOD | override).items() if v is not None}
    with pytest.raises(SettingsError) as error:
        load_wechat_settings(**values)
    assert str(error.value).startswith(line)
    assert "\n" not in str(error.value)
    assert GOOD["app_secret"] not in str(error.value)


def test_money_is_formatted_from_integer_fen() -> None:
    assert [yuan(1250), yuan(5), yuan(0), yuan(-101)] == ["¥12.50", "¥0.05", "¥0.00", "-¥1.01"]


def test_a_receipt_notice_becomes_template_fields_within_the_rules() -> None:
    notice = Notice(
        "redemption.receipt",
        {
            "merchant": "绿色超市（临安钱王街旗舰店）\u202e 二楼生鲜区B座",  # 22 visible
            "amount_fen": 12345,
            "voucher_fen": 2000,
            "member_id": 7,
        },
    )
    assert template_data(notice) == {
        "thing1": "绿色超市（临安钱王街旗舰店） 二楼生鲜…",  # 19 + …
        "amount2": "¥123.45",
        "amount3": "¥20.00",
    }


def test_an_expiry_is_shown_in_beijing_time() -> None:
    notice = Notice("voucher.expiring", {"amount_fen": 800, "expires_at": "2026-12-01T16:30:00Z"})
    assert template_data(notice) == {"amount1": "¥8.00", "time2": "2026-12-02 00:30"}
