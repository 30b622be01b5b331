"""Redshift's SQL grammar, as sqlfluff's Redshift dialect knows it: the gate every statement passes;
and `recording`, which collects the statements a warehouse sends.

No Redshift runs here (FIELD_NOTES), and PostgreSQL accepts SQL that Redshift refuses (an unquoted `tag`,
a reserved word in Redshift). sqlfluff checks grammar only, not COPY option combinations (the project's
`validate_copy_options` does that) nor semantics (only a real cluster settles those).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import sqlalchemy as sa
from sqlfluff.core import FluffConfig, Linter

from tests.tasks.warehouse.redshift_copy_double import RedshiftCopyDouble

# The COPY double's bookkeeping on its own connection: what Redshift's system views do, not project SQL.
DOUBLE_BOOKKEEPING = "INSERT INTO public.sys_load_error_detail"


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


@contextmanager
def recording(engine: sa.Engine, double: RedshiftCopyDouble | None = None) -> Iterator[list[str]]:
    """Every statement sent on `engine`, as Redshift would receive it: recorded before the COPY double, if
    any (listened to again after the recorder), replaces the COPY with what PostgreSQL runs."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().startswith(DOUBLE_BOOKKEEPING):
            args = parameters[0] if executemany else parameters
            mogrify = getattr(cursor, "mogrify", None)  # psycopg2's; other drivers' text is recorded as is
            sent.append(mogrify(statement, args).decode() if mogrify else statement)

    if double:
        double.remove()
    sa.event.listen(engine, "before_cursor_execute", record)
    if double:
        double.listen()
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
