"""/link: one member on WeChat and Telegram (issue 10; DESIGN.md "The conversation core").

A person asks for a one-time code on one channel (``/link``, or /settings' "Link my other app")
and types it on the other (``/link 12345678``, or /settings' "I have a link code" and then the
digits). The chat that types it joins the code's member: from then its balance, codes and
notices are that member's, and notices go to the one channel the person chose (a setting,
offered right after linking and in /settings). The ledger attaches the identity
(``attach_identity``, keyed by the code so a retry after an outage is the same request); it
refuses when the typing chat's own member already has points, vouchers or history, since
members are never merged. Codes, their throttle and the notice channel live in the bot's
database (``bot.storage.links``).
"""

from __future__ import annotations

from bot.chat import choice_data
from bot.chat.events import Choice, Command, Photo, Text
from bot.chat.flows import Pending
from bot.chat.formatting import clock
from bot.chat.i18n import N_, Translator
from bot.chat.links import CODE_TTL, Claim, digits
from bot.chat.replies import ChoiceButton, Toast
from bot.chat.router import Router
from bot.chat.turn import Profile, Turn
from ledger_client import errors as ledger_errors

ASK = "lnk"  # choice: give me a code
ENTER = "lne"  # choice: I have a code, let me type it
NOTICES_TO = "nch"  # choice: notices go to this channel
WAITING = "link_code"  # flow: the next text is a code

CHANNEL_NAMES = {"telegram": N_("Telegram"), "wechat": N_("WeChat"), "console": N_("the console")}


def channel_name(t: Translator, channel: str) -> str:
    name = CHANNEL_NAMES.get(channel)
    return t._(name) if name is not None else channel


def link_choices(t: Translator) -> list[ChoiceButton]:
    return [
        ChoiceButton(t._("Link my other app"), choice_data.pack(ASK)),
        ChoiceButton(t._("I have a link code"), choice_data.pack(ENTER)),
    ]


def notice_choices(t: Translator, chats: list[Profile], chosen: str) -> list[ChoiceButton]:
    return [
        ChoiceButton(
            t._("Send notices to {app}").format(app=channel_name(t, p.channel)),
            choice_data.pack(NOTICES_TO, p.channel),
        )
        for p in chats
        if p.channel != chosen
    ]


async def linked_chats(turn: Turn) -> tuple[list[Profile], str | None]:
    """The person's chats on every channel (one per channel) and where notices go; one chat
    and None when nothing is linked."""
    profile = turn.profile
    if profile.member_id is None:
        return [profile], None
    chats = await turn.services.chats.linked(profile.member_id)
    if len({p.channel for p in chats}) < 2:
        return [profile], None
    chosen = await turn.services.links.notice_channel(profile.member_id)
    return chats, chosen or chats[0].channel


async def settings_part(turn: Turn) -> tuple[list[str], list[ChoiceButton]]:
    """What /settings says about linking: the linked apps and where notices go with a choice to
    move them, or the two ways to link."""
    t = turn.t
    chats, chosen = await linked_chats(turn)
    if chosen is None:
        return [t._("Use Green Points on WeChat and Telegram? Link them to keep one balance.")], [
            *link_choices(t)
        ]
    apps = " · ".join(channel_name(t, p.channel) for p in chats)
    return [
        t._("Linked: {apps}. Your points, vouchers and codes are the same on each.").format(
            apps=apps
        ),
        t._("Notices go to {app}.").format(app=channel_name(t, chosen)),
    ], notice_choices(t, chats, chosen)


async def give_code(turn: Turn) -> None:
    t = turn.t
    member_id = await turn.member_id()
    issued = await turn.services.links.issue(turn.profile.key, member_id)
    minutes = int(CODE_TTL.total_seconds() // 60)
    turn.text(
        "\n".join(
            [
                t._("Your link code: {code}").format(code=issued.code),
                t.ngettext(
                    "Within {minutes} minute, type it in the Green Points bot on your other "
                    "app (WeChat or Telegram): /link {code}",
                    "Within {minutes} minutes, type it in the Green Points bot on your other "
                    "app (WeChat or Telegram): /link {code}",
                    minutes,
                ).format(minutes=minutes, code=issued.code),
                t._("It works once. Never tell it to anyone else: it opens your points."),
            ]
        )
    )


async def link(event: Command, turn: Turn) -> None:
    if event.args:
        await take(" ".join(event.args), turn)
    else:
        await give_code(turn)


async def ask_code(event: Choice, turn: Turn) -> None:
    await give_code(turn)


async def enter_code(event: Choice, turn: Turn) -> None:
    await turn.services.flows.start(turn.profile.key, WAITING, {}, CODE_TTL)
    turn.text(turn.t._("Type the 8-digit link code your other app showed you."))


async def on_flow_message(event: Text | Photo, turn: Turn, pending: Pending) -> None:
    await turn.services.flows.finish(turn.profile.key, WAITING)
    await take(event.text if isinstance(event, Text) else "", turn)


def refusal(t: Translator, claim: Claim) -> str:
    """The reason a code did not link, in whole sentences."""
    new_one = t._("Ask for a new one in /settings on your other app.")
    if claim.outcome == "expired":
        return t._("That link code has expired (codes last 10 minutes).") + "\n" + new_one
    if claim.outcome == "used":
        return t._("That link code was already used.") + "\n" + new_one
    if claim.outcome == "self":
        return t._(
            "That is the code this chat gave you. Type it in the Green Points bot on your "
            "other app, not here."
        )
    if claim.outcome == "same_channel":
        return t._(
            "A link code joins two different apps: type it on the app you did not get it from."
        )
    if claim.outcome == "already":
        return t._("This chat is already linked to those points. Nothing to do.")
    if claim.outcome == "taken":
        return t._(
            "Those points are already linked to another account on this app. Each app can be "
            "linked once."
        )
    if claim.outcome == "throttled" and claim.retry_at is not None:
        return t._("Too many wrong codes. Try again after {time}.").format(
            time=clock(t, claim.retry_at)
        )
    return t._("That is not a valid link code. Check the 8 digits and try again.")


async def take(text: str, turn: Turn) -> None:
    """Link this chat to the member whose code ``text`` holds, or say why not."""
    t = turn.t
    code = digits(text)
    if code is None:
        turn.text(t._("A link code is 8 digits, for example: /link 12345678"))
        return
    profile = turn.profile
    links = turn.services.links
    claim = await links.claim(code, profile.key, profile.member_id)
    if claim.outcome != "claimed" or claim.member_id is None or claim.issuer is None:
        turn.text(refusal(t, claim))
        return
    try:
        await turn.services.ledger.attach_identity(
            claim.member_id, *profile.identity, idempotency_key=f"link:{claim.code_hash[:40]}"
        )
    except ledger_errors.IdentityInUse:
        await links.release(claim.code_hash, profile.key)
        turn.text(
            t._(
                "This chat already has points, vouchers or a code of its own, so it cannot join "
                "other points: points are never moved between members. You can keep using "
                "each app on its own."
            )
        )
        return
    except BaseException:
        await links.release(claim.code_hash, profile.key)  # the person may try again
        raise
    updated = await turn.services.chats.link_member(profile.key, claim.member_id)
    if updated is not None:
        turn.switch_profile(updated)
    # Notices keep going where they went until the person moves them.
    issuer_channel = claim.issuer[0]
    await links.set_notice_channel(claim.member_id, issuer_channel)
    t = turn.t
    here, there = channel_name(t, profile.channel), channel_name(t, issuer_channel)
    turn.text(
        "\n".join(
            [
                t._("Linked! Here on {here} you now have the points of your {there} account: "
                    "balance, codes and notices follow you on both.").format(
                    here=here, there=there
                ),
                t._("Notices go to {app}.").format(app=there),
            ]
        ),
        [[ChoiceButton(t._("Send notices to {app}").format(app=here),
                       choice_data.pack(NOTICES_TO, profile.channel))]],
    )


async def choose_notice_channel(event: Choice, turn: Turn) -> None:
    t = turn.t
    parts = choice_data.unpack(event.data, NOTICES_TO, 1)
    chats, _chosen = await linked_chats(turn)
    if not parts or turn.profile.member_id is None or parts[0] not in {
        p.channel for p in chats
    }:
        turn.say(Toast(t._("This button has expired.")))
        return
    await turn.services.links.set_notice_channel(turn.profile.member_id, parts[0])
    turn.text(
        t._("Notices go to {app} from now on.").format(app=channel_name(t, parts[0])),
        [notice_choices(t, chats, parts[0])],
        replaces=True,
    )


def routes(router: Router) -> None:
    router.command("link", link)
    router.choice(ASK, ask_code)
    router.choice(ENTER, enter_code)
    router.choice(NOTICES_TO, choose_notice_channel)
    router.state(WAITING, on_flow_message)
