"""The embedded ledger's operator commands, reached from ``greenpoints ledger``.

The bot package may only reach the ledger through this package; this is that door for the
command line.
"""

from __future__ import annotations

from collections.abc import Sequence


def run_ledger_cli(argv: Sequence[str]) -> int:
    from ledger.cli import main

    return main(argv)
