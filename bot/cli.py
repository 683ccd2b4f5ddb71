"""The ``greenpoints`` command: ``ledger …`` (the ledger service), ``bot`` and ``demo``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: greenpoints COMMAND …

commands:
  ledger …   run and operate the points ledger (greenpoints ledger --help)
  bot        run the Telegram bot (polling, or webhook with GREENPOINTS_WEBHOOK_URL);
             --channel wechat: the WeChat endpoint at /wechat (GREENPOINTS_WECHAT_*);
             /healthz and /metrics on the webhook's server, or GREENPOINTS_WEB_HOST:_PORT
             when polling (127.0.0.1:8088; port 0: off); logs: GREENPOINTS_LOG_LEVEL,
             GREENPOINTS_LOG_FORMAT=json
  demo       chat with the bot in this terminal: no token, no network;
             --channel wechat: as a WeChat follower sees it (menu links, 2,048-byte
             messages, pictures without captions, template notices)
  wechat …   operate the WeChat account: setup-menus (greenpoints wechat --help)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "ledger":
        from ledger_client.embedded import run_ledger_cli

        return run_ledger_cli(rest)
    if command == "bot":
        from bot.runtime import main as run_bot

        return run_bot(rest)
    if command == "wechat":
        from bot.channels.wechat.cli import main as run_wechat

        return run_wechat(rest)
    if command == "demo":
        if rest[:2] == ["--channel", "wechat"]:
            from bot.channels.wechat.demo import main as run_wechat_demo

            return run_wechat_demo(rest[2:])
        from bot.channels.console.demo import main as run_demo

        return run_demo(rest[2:] if rest[:2] == ["--channel", "console"] else rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
