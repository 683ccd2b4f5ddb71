"""The role matrix of docs/roles.md, parsed: the expected answers of the role tests.

Read from the document, never from ``ledger.principal.PERMISSIONS``, so a permission granted or
withdrawn in the code by mistake is a failing test, not a silently updated expectation.
"""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "roles.md"
ROLES = ("bot", "merchant", "admin", "anonymous")


def _tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in ``text``: rows of stripped cells, header first, rule dropped."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _load() -> tuple[dict[str, dict[str, bool]], dict[str, dict[str, str]]]:
    roles_table, acting_table = _tables(DOC.read_text(encoding="utf-8"))
    header, *rows = roles_table
    assert tuple(header[1:]) == ROLES, header
    allowed: dict[str, dict[str, bool]] = {}
    for route, *answers in rows:
        assert set(answers) <= {"yes", "no"}, (route, answers)
        allowed[route] = {role: a == "yes" for role, a in zip(ROLES, answers, strict=True)}
    header, *rows = acting_table
    acting = {route: dict(zip(header[1:], answers, strict=True)) for route, *answers in rows}
    return allowed, acting


ALLOWED, ACTING = _load()
"""ALLOWED["POST /v1/purchases"]["merchant"] -> True; ACTING[route][column] -> "yes", "-" or
"<status> <error code>" (columns as in the document's second table)."""
