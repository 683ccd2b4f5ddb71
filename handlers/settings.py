"""/language and /settings: the person's language, whether the bot may speak first, and how
often new vouchers are told (the voucher digest's period, issue 12)."""

from __future__ import annotations

from bot.chat import choice_data
from bot.chat.events import Choice, Command
from bot.chat.i18n import LOCALES, Translator
from bot.chat.replies import ChoiceButton, Toast
from bot.chat.router import Router
from bot.chat.turn import Turn
from handlers import link

LANGUAGE = "lang"
NOTICES = "ntc"
DIGEST = "dgs"
PERIODS = ("daily", "weekly", "off")  # bot.outbox.policy.PERIODS
NAMES = {"zh_Hans": "简体中文", "zh_Hant": "繁體中文", "en": "English"}


def language_choices(current: str) -> list[list[ChoiceButton]]:
    return [
        [
            ChoiceButton(
                ("✓ " if code == current else "") + NAMES[code], choice_data.pack(LANGUAGE, code)
            )
            for code in LOCALES
        ]
    ]


async def language(event: Command, turn: Turn) -> None:
    turn.text(turn.t._("Choose your language:"), language_choices(turn.profile.locale))


async def choose_language(event: Choice, turn: Turn) -> None:
    parts = choice_data.unpack(event.data, LANGUAGE, 1)
    if not parts or parts[0] not in LOCALES:
        turn.say(Toast(turn.t._("This button has expired.")))
        return
    services = turn.services
    current = turn.profile
    # The ledger is asked first: if it is down, nothing has changed yet and the person is told
    # to try again, rather than being left with a half-switched language.
    if current.member_id is not None:
        await services.ledger.update_member(current.member_id, locale=parts[0])
    staff = await services.ledger.staff_lookup(*current.identity) is not None
    profile = await services.chats.set_locale(current.key, parts[0])
    assert profile is not None
    turn.switch_profile(profile)
    turn.text(
        turn.t._("I will speak {language} from now on.").format(language=NAMES[profile.locale]),
        replaces=True,
    )
    turn.refresh_menu(staff=staff)


def notices_choices(t: Translator, on: bool, period: str) -> list[list[ChoiceButton]]:
    label = t._("Turn notices off") if on else t._("Turn notices on")
    rows = [[ChoiceButton(label, choice_data.pack(NOTICES, int(not on)))]]
    if on:
        names = period_names(t)
        rows.append(
            [
                ChoiceButton(("✓ " if p == period else "") + names[p], choice_data.pack(DIGEST, p))
                for p in PERIODS
            ]
        )
    return rows


def period_names(t: Translator) -> dict[str, str]:
    return {"daily": t._("Daily"), "weekly": t._("Weekly"), "off": t._("No digest")}


def digest_text(t: Translator, period: str) -> str:
    """Whole sentences per period, so no language has to fit a word into a slot."""
    if period == "daily":
        return t._("New vouchers are told in one message a day.")
    if period == "weekly":
        return t._("New vouchers are told in one message a week.")
    return t._("New vouchers are not told; /balance shows them.")


def settings_text(t: Translator, on: bool, period: str) -> str:
    """Whole sentences per state, so no language has to fit "on" or "off" into a slot."""
    state = t._("Notices are on.") if on else t._("Notices are off.")
    lines = [
        state,
        t._(
            "With notices on I tell you when vouchers are granted, used or about to "
            "expire, and when a purchase earns you points."
        ),
    ]
    if on:
        lines += [digest_text(t, period), t._("Nothing but receipts is sent at night.")]
    return "\n".join(lines)


def _period(turn: Turn) -> str:
    chosen = turn.profile.digest
    return chosen if chosen in PERIODS else turn.services.settings.notice_digest_default


async def settings_screen(turn: Turn, *, replaces: bool = False) -> None:
    """Notices on or off and the digest period, then linking (``handlers.link``: the linked
    apps and where notices go, or how to link)."""
    on, period = turn.profile.notices, _period(turn)
    lines, link_buttons = await link.settings_part(turn)
    turn.text(
        "\n\n".join([settings_text(turn.t, on, period), "\n".join(lines)]),
        [*notices_choices(turn.t, on, period), link_buttons],
        replaces=replaces,
    )


async def settings(event: Command, turn: Turn) -> None:
    await settings_screen(turn)


async def toggle_notices(event: Choice, turn: Turn) -> None:
    parts = choice_data.unpack(event.data, NOTICES, 1)
    if not parts or parts[0] not in {"0", "1"}:
        turn.say(Toast(turn.t._("This button has expired.")))
        return
    on = parts[0] == "1"
    profile = await turn.services.chats.set_notices(turn.profile.key, on)
    if profile is not None:
        turn.switch_profile(profile)
    await settings_screen(turn, replaces=True)


async def choose_digest(event: Choice, turn: Turn) -> None:
    """Store the digest period for this chat: grants read from now on follow it; those already
    held go out when they were due (``bot.outbox.policy``); with ``off`` they are dropped."""
    parts = choice_data.unpack(event.data, DIGEST, 1)
    if not parts or parts[0] not in PERIODS:
        turn.say(Toast(turn.t._("This button has expired.")))
        return
    profile = await turn.services.chats.set_digest(turn.profile.key, parts[0])
    if profile is not None:
        turn.switch_profile(profile)
    await settings_screen(turn, replaces=True)


def routes(router: Router) -> None:
    router.command("language", language)
    router.command("settings", settings)
    router.choice(LANGUAGE, choose_language)
    router.choice(NOTICES, toggle_notices)
    router.choice(DIGEST, choose_digest)
