"""The conversation features, in the order their routes are tried (fallback last)."""

from __future__ import annotations

from bot.chat.router import Router
from handlers import (
    admin,
    balance,
    circle,
    fallback,
    link,
    merchant,
    nearby,
    owner,
    pool,
    redeem,
    settings,
    start,
)

FEATURES = (
    start, balance, pool, nearby, redeem, merchant, owner, admin, circle, settings, link,
    fallback,
)


def neutral_router() -> Router:
    """Every feature's routes, states and catchers, for any channel."""
    router = Router()
    for feature in FEATURES:
        feature.routes(router)
    return router
