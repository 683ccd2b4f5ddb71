"""A person's named state: the conversation a feature started and waits to continue.

The router hands it to the state's feature (``Router.state``); ``bot.storage.flows`` keeps it in
the bot's database so it survives a restart and a second process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pending:
    """The state's name (``kind``, as registered with ``Router.state``) and what the feature
    stored with it (JSON-serialisable)."""

    kind: str
    data: dict[str, Any]
