"""/language and /settings: the person's language and whether the bot may speak first."""

from __future__ import annotations

from bot.chat import choice_data
from bot.chat.events import Choice, Command
from bot.chat.i18n import LOCALES, Translator
from bot.chat.replies import ChoiceButton, Toast
from bot.chat.router import Router
from bot.chat.turn import Turn

LANGUAGE = "lang"
NOTICES = "ntc"
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


def notices_choices(t: Translator, on: bool) -> list[list[ChoiceButton]]:
    label = t._("Turn notices off") if on else t._("Turn notices on")
    return [[ChoiceButton(label, choice_data.pack(NOTICES, int(not on)))]]


def settings_text(t: Translator, on: bool) -> str:
    """Whole sentences per state, so no language has to fit "on" or "off" into a slot."""
    state = t._("Notices are on.") if on else t._("Notices are off.")
    return "\n".join(
        [
            state,
            t._(
                "With notices on I tell you when vouchers are granted, used or about to "
                "expire, and when a purchase earns you points."
            ),
        ]
    )


async def settings(event: Command, turn: Turn) -> None:
    on = turn.profile.notices
    turn.text(settings_text(turn.t, on), notices_choices(turn.t, on))


async def toggle_notices(event: Choice, turn: Turn) -> None:
    parts = choice_data.unpack(event.data, NOTICES, 1)
    if not parts or parts[0] not in {"0", "1"}:
        turn.say(Toast(turn.t._("This button has expired.")))
        return
    on = parts[0] == "1"
    await turn.services.chats.set_notices(turn.profile.key, on)
    turn.text(settings_text(turn.t, on), notices_choices(turn.t, on), replaces=True)


def routes(router: Router) -> None:
    router.command("language", language)
    router.command("settings", settings)
    router.choice(LANGUAGE, choose_language)
    router.choice(NOTICES, toggle_notices)
