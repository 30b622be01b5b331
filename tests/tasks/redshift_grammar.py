"""Redshift's SQL grammar, as sqlfluff's Redshift dialect knows it: the gate every statement passes.

No Redshift runs here (FIELD_NOTES), and PostgreSQL accepts SQL that Redshift refuses (an unquoted `tag`,
a reserved word in Redshift). sqlfluff checks grammar only, not COPY option combinations (the project's
`validate_copy_options` does that) nor semantics (only a real cluster settles those).
"""

from __future__ import annotations

from functools import cache

from sqlfluff.core import FluffConfig, Linter


@cache
def _linter() -> Linter:
    return Linter(config=FluffConfig(overrides={"dialect": "redshift"}))


def unparsable(sql: str) -> list[str]:
    """Why `sql` is not Redshift (empty when every part of it parses)."""
    parsed = _linter().parse_string(sql)
    return [v.desc() for v in parsed.violations]


def naked_identifiers(sql: str) -> set[str]:
    """Identifiers written without double quotes (table aliases, system catalog names, ...)."""
    tree = _linter().parse_string(sql).tree
    return {seg.raw for seg in tree.recursive_crawl("naked_identifier")} if tree else set()
