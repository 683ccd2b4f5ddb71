"""/circle: which everyday needs have an alliance merchant within a 15-minute walk of a place.

DESIGN.md "The seeds' other rules" (一刻钟便民生活圈): alliance staff ask, for a place, which
everyday categories are covered and where the gaps are — the map the alliance grows along. For
admins only. ``/circle LAT LON`` answers at once; ``/circle`` alone asks for a location and the
next location the admin shares is the place (a named state, like the till's).
"""

from __future__ import annotations

import datetime as dt
import math

from bot.chat.events import Command, Location
from bot.chat.flows import Pending
from bot.chat.i18n import N_, Translator, translator
from bot.chat.pictures import MapLabels, MapMerchant
from bot.chat.replies import AskLocation, Picture
from bot.chat.router import Router
from bot.chat.turn import Turn
from handlers.admin import refused
from handlers.nearby import category_name, shown, valid_coordinates
from ledger_client.models import Circle

WAITING = "circle"  # the state: the next shared location is the place to report on
WAIT_FOR = dt.timedelta(minutes=10)
NAME_SHOWN = 30
NEEDS = {
    "supermarket": N_("Supermarket"),
    "fresh_food": N_("Fresh food"),
    "breakfast": N_("Breakfast"),
    "pharmacy": N_("Pharmacy"),
    "clinic": N_("Clinic"),
    "laundry": N_("Laundry"),
    "repairs": N_("Repairs"),
    "hairdresser": N_("Hairdresser"),
    "restaurant": N_("Restaurant"),
    "cafe": N_("Café"),
    "bookstore": N_("Books"),
    "florist": N_("Florist"),
    "fitness": N_("Fitness"),
    "elderly_care": N_("Elderly care"),
}
GROUPS = {"basic": N_("Basic needs"), "quality": N_("Quality of life")}


def need_name(t: Translator, key: str) -> str:
    """A configured need's name; a need the catalogs do not know shows its key."""
    return t._(NEEDS[key]) if key in NEEDS else key


def circle_text(t: Translator, circle: Circle) -> str:
    lines = [
        t._("15-minute convenience circle ({walk} m on foot) around {lat:.5f}, {lon:.5f}:").format(
            walk=circle.walk_m, lat=circle.lat, lon=circle.lon
        )
    ]
    group = None
    for need in circle.categories:
        if need.group != group:
            group = need.group
            lines += ["", t._(GROUPS[group]) if group in GROUPS else group]
        nearest = need.nearest
        if nearest is None:
            lines.append("✗ " + t._("{need}: none within the walk").format(
                need=need_name(t, need.key)))
        else:
            lines.append("✓ " + t._("{need}: {name}, {minutes} min ({count} in the circle)").format(
                need=need_name(t, need.key),
                name=shown(nearest.name, NAME_SHOWN),
                minutes=nearest.walk_minutes,
                count=need.count,
            ))
    lines.append("")
    if circle.gaps:
        lines.append(t._("Gaps: {needs}").format(
            needs=t._(", ").join(need_name(t, key) for key in circle.gaps)))
    else:
        lines.append(t._("No gaps: every everyday need is within the walk."))
    return "\n".join(lines)


async def report(turn: Turn, lat: float, lon: float) -> None:
    t = turn.t
    circle = await turn.services.ledger.circle(lat, lon)
    pictures = turn.services.pictures
    drawn = t if pictures.has_cjk() else translator("en")  # no CJK font: English labels
    labels = MapLabels(
        title=drawn._("15-minute convenience circle"),
        categories={m.category: category_name(drawn, m.category) for m in circle.merchants},
        scale=drawn._("{metres} m"),
    )
    merchants = [MapMerchant(m.lat, m.lon, m.category) for m in circle.merchants]
    png = await pictures.circle_map(circle.lat, circle.lon, circle.radius_m, merchants, labels)
    turn.say(Picture(png, alt_text=t._("15-minute convenience circle")))
    turn.text(circle_text(t, circle))


async def start_circle(event: Command, turn: Turn) -> None:
    t = turn.t
    if not turn.services.is_admin(turn.profile.key):
        turn.text(refused(t))
        return
    if event.args:
        try:
            lat, lon = (float(a) for a in event.args) if len(event.args) == 2 else (math.nan,) * 2
        except ValueError:
            lat = lon = math.nan
        if valid_coordinates(lat, lon):
            await report(turn, lat, lon)
            return
        turn.text(t._("That location is not on this planet. Please send it again."))
    await turn.services.flows.start(turn.profile.key, WAITING, {}, WAIT_FOR)
    turn.say(AskLocation(
        t._("Share the place to check (or send /circle LAT LON, e.g. /circle 30.2341 119.7239)."),
        t._("📍 Send my location"),
    ))


async def on_location(event: Location, turn: Turn, pending: Pending) -> None:
    await turn.services.flows.finish(turn.profile.key, WAITING)
    if not turn.services.is_admin(turn.profile.key):  # re-checked: admins can be removed
        turn.text(refused(turn.t))
        return
    await report(turn, event.lat, event.lon)


def routes(router: Router) -> None:
    router.command("circle", start_circle)
    router.location_state(WAITING, on_location)
