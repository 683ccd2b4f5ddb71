"""DESIGN.md "Layout": who may import whom, held by walking the import graph (ast, no imports run).

Dependencies point one way: channels -> chat core -> handlers -> ledger_client -> ledger. Here:
the ledger imports nothing of ours; handlers and the chat core import no chat platform library
and no channel; ledger_client reaches the ledger only from its in-process client; and the
modules of ``bot`` and ``handlers`` form no import cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("ledger", "ledger_client", "handlers", "bot")
PLATFORMS = ("telegram", "wechatpy")
# Modules still written against python-telegram-bot outside its channel: the outbox's sender
# and announcement runner (made channel-neutral by the outbox's own work; issue 9), and the
# operations code that counts Telegram updates and wraps its rate limiter.
TELEGRAM_PENDING = frozenset({
    "bot.outbox.sender", "bot.outbox.broadcast_runner", "bot.ops.metrics",
})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in OURS:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str, *, top_level_only: bool = False) -> Iterator[str]:
    """Every module ``path`` imports (absolute names); ``top_level_only`` skips imports inside
    functions (deferred imports, which cannot form an import-time cycle) and under
    ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield module
            for alias in node.names:  # ``from bot.chat import formatting``: bot.chat.formatting
                yield f"{module}.{alias.name}"


def ours(target: str, known: dict[str, Path]) -> str | None:
    return target if target in known else None


def graph(top_level_only: bool) -> dict[str, set[str]]:
    known = modules()
    return {
        name: {
            t
            for t in imports_of(path, name, top_level_only=top_level_only)
            if ours(t, known) and t != name
        }
        for name, path in known.items()
    }


def external(name: str) -> set[str]:
    path = modules()[name]
    return {t.split(".")[0] for t in imports_of(path, name)}


def test_the_ledger_imports_nothing_of_ours() -> None:
    offenders = {
        name: sorted(t for t in external(name) if t in OURS and t != "ledger")
        for name in modules()
        if name == "ledger" or name.startswith("ledger.")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_ledger_client_reaches_the_ledger_only_in_process() -> None:
    users = sorted(
        name
        for name in modules()
        if name.startswith("ledger_client") and "ledger" in external(name)
    )
    assert set(users) <= {"ledger_client.inprocess", "ledger_client.embedded"}


def test_handlers_import_only_the_core_and_the_ledger_client() -> None:
    """DESIGN.md's row for ``handlers/``: ``ledger_client`` and ``bot.chat`` (and each other, and
    the standard library), nothing else: no other part of ``bot`` (storage, outbox, media), no
    third-party library (Babel, Pillow: the core's formatting and pictures speak for them)."""
    allowed = ("ledger_client", "bot.chat", "handlers")
    stdlib = sys.stdlib_module_names | {"__future__"}
    offenders = {}
    for name, path in modules().items():
        if name != "handlers" and not name.startswith("handlers."):
            continue
        bad = sorted(
            t
            for t in set(imports_of(path, name))
            if t.split(".")[0] not in stdlib
            and not any(t == a or t.startswith(a + ".") for a in allowed)
        )
        if bad:
            offenders[name] = bad
    assert offenders == {}


def test_only_the_telegram_channel_imports_telegram() -> None:
    """python-telegram-bot lives in ``bot.channels.telegram`` alone (issue 9: channels are
    adapters), so a second channel, the console and the outbox never drag it in."""
    offenders = sorted(
        name
        for name in modules()
        if "telegram" in external(name)
        and not name.startswith("bot.channels.telegram")
        and name not in TELEGRAM_PENDING
    )
    assert offenders == []


@pytest.mark.parametrize("area", ["handlers", "bot.chat"])
def test_features_and_the_core_import_no_platform_and_no_channel(area: str) -> None:
    edges = graph(top_level_only=False)
    offenders = {}
    for name in modules():
        if name != area and not name.startswith(area + "."):
            continue
        bad = sorted(t for t in external(name) if t in PLATFORMS)
        bad += sorted(t for t in edges[name] if t.startswith("bot.channels"))
        if bad:
            offenders[name] = bad
    assert offenders == {}


def test_no_import_cycles() -> None:
    """Deferred imports count too: one inside a function to dodge a cycle is still a cycle in
    the design (``bot.ops.metrics`` once imported ``bot.background`` so, which imported the app)."""
    edges = graph(top_level_only=False)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    # A package importing its own submodules (``bot`` -> ``bot.x`` -> ``bot``) is how Python
    # packages work, not a cycle between modules with jobs.
    real = [c for c in cycles if not any(len(n.split(".")) < 2 for n in c)]
    assert real == []


def test_the_console_is_a_channel() -> None:
    """The WeChat channel and the outbox are written against ``Channel``; the console, the one
    channel without a platform, must satisfy it."""
    from bot.channels.console.channel import ConsoleChannel
    from bot.chat.channel import CONSOLE, Channel
    from bot.chat.events import Person
    from bot.chat.router import Router

    console = ConsoleChannel(None, Router(), None, Person("console", "1"))  # type: ignore[arg-type]
    assert isinstance(console, Channel)
    assert console.capabilities is CONSOLE


def test_telegram_is_a_channel() -> None:
    """Telegram answers through a ``Channel`` object like the console and WeChat, rather than
    rendering inside its python-telegram-bot handler."""
    from telegram import Bot

    from bot.channels.telegram.channel import TelegramChannel
    from bot.chat.channel import TELEGRAM, Channel

    telegram = TelegramChannel(Bot("1:offline"))
    assert isinstance(telegram, Channel)
    assert telegram.capabilities is TELEGRAM


def test_the_core_and_the_features_load_no_platform_at_all() -> None:
    """Not only their own imports: nothing the core and every feature load, all the way down
    (services, storage, outbox rows, media), brings in a chat platform's library or a channel.
    A fresh interpreter, since this one has python-telegram-bot loaded already."""
    import subprocess

    script = (
        "import importlib, pkgutil, sys\n"
        "import bot.chat, handlers\n"
        "for package in (bot.chat, handlers):\n"
        "    for m in pkgutil.iter_modules(package.__path__):\n"
        "        importlib.import_module(package.__name__ + '.' + m.name)\n"
        "import bot.features\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in "
        f"{PLATFORMS!r} or k.startswith('bot.channels')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
