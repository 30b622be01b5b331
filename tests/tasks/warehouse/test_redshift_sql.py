"""The Redshift SQL gate: every statement the project can send to Redshift parses as Redshift.

Statements are collected by running the real code paths of `RedshiftWarehouse` (table creation and
migration, a day's load in both COPY formats, a failed COPY's error lookup, the daily analysis with its
views, the dashboard's reads) on the test PostgreSQL with the COPY double, recording each statement as the
driver sends it, bound values rendered (psycopg2's `mogrify`). Every COPY option set the validator allows
is compiled too. Each statement must parse in sqlfluff's Redshift dialect (`redshift_grammar`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import fields, replace
from datetime import date

import polars as pl
import pytest

from tasks.analytics.analyze import analyze_day
from tasks.analytics.dashboard import is_latest_day, load_dashboard_data, pages_inputs
from tasks.schema import METRIC_TABLES, SCORE_TABLES, TABLES
from tasks.warehouse.base import WarehouseError
from tasks.warehouse.redshift import (
    CopyAuthorization,
    CopyOptions,
    CopyOptionsError,
    build_copy,
    validate_copy_options,
)
from tests.tasks.warehouse.redshift_grammar import naked_identifiers, recording, unparsable
from tests.tasks.warehouse.test_redshift import KEYS, MANIFEST, ROLE


def assert_redshift(statements: list[str]) -> None:
    """Every statement parses as Redshift, and names every table and column in double quotes (so no name
    is read as one of Redshift's reserved words); only one-letter table aliases go bare."""
    failures = {}
    for sql in dict.fromkeys(statements):
        why = unparsable(sql)
        if bare := {name for name in naked_identifiers(sql) if len(name) > 1}:
            why.append(f"identifiers not quoted: {sorted(bare)}")
        if why:
            failures[sql] = why
    report = "\n\n".join(f"{sql}\n  -> {'; '.join(why)}" for sql, why in failures.items())
    assert not failures, f"{len(failures)} statement(s) are not valid Redshift:\n{report}"


def test_every_statement_of_a_day_parses_as_redshift(
    redshift, lake, day: date, sample_frames, curate_frames
) -> None:
    frames = sample_frames(day, 80)
    files = curate_frames(lake, day, frames, parts=2)
    parquet, parquet_double = redshift()
    csv, csv_double = redshift(CopyOptions.for_format("csv"))
    # An older table without a column the schema has, so the migration's ALTER TABLE is sent too.
    old_users = parquet.design(TABLES["users"]).create_sql("redshift", parquet.schema)
    parquet.execute_script([f'CREATE SCHEMA "{parquet.schema}"',
                            old_users.replace('    "location" VARCHAR(400),\n', "")])
    with recording(parquet.engine, parquet_double) as sent, recording(csv.engine, csv_double) as sent_csv:
        for warehouse in (parquet, csv):
            warehouse.ensure_tables()
            for table_files in files.values():
                warehouse.load_day(lake, table_files)
        analyze_day(parquet, day)
        assert analyze_day(parquet, day).unchanged_since is not None  # the path that keeps the metrics
        pages_inputs(parquet)
        load_dashboard_data(parquet, day)
        is_latest_day(parquet, day)
        parquet.row_counts()
        broken = frames["users"].with_columns(pl.lit("😀" * 400).alias("username"))
        with pytest.raises(WarehouseError, match="sys_load_error_detail"):
            csv.load_day(lake, curate_frames(lake, day, {**frames, "users": broken})["users"])

    # Sent on each new connection, through the driver's own cursor (not recorded above).
    statements = parquet.session_settings() + sent + sent_csv
    kinds = {" ".join(s.split()[:2]).upper() for s in statements}
    assert {"CREATE TABLE", "CREATE TEMPORARY", "ALTER TABLE", 'COPY "STG_TWEETS"', "DELETE FROM", "INSERT INTO",
            "CREATE VIEW", "DROP VIEW", "SELECT PG_LAST_COPY_COUNT()"} <= kinds
    assert any("FORMAT AS CSV" in s for s in statements) and any("FORMAT AS PARQUET" in s for s in statements)
    assert any("sys_load_error_detail" in s for s in statements)
    assert any(s.startswith(f'UPDATE "{parquet.schema}"."loaded_days"') for s in statements)
    assert any(s.startswith(f'INSERT INTO "{parquet.schema}"."analyzed_days"') for s in statements)
    assert "SET statement_timeout TO 1800000" in statements
    derived = {**METRIC_TABLES, **SCORE_TABLES}
    assert {name for name in derived if any(f'"{name}"' in s for s in statements)} == set(derived)
    # The day's new sentiment scores: staged by multi-row INSERT, then inserted where no score is stored.
    assert any(s.startswith('INSERT INTO "stg_tweet_sentiment"') for s in statements)
    assert any(s.startswith(f'INSERT INTO "{parquet.schema}"."tweet_sentiment"') for s in statements)
    assert_redshift(statements)


def _allowed_option_sets() -> Iterator[CopyOptions]:
    """Each option the validator allows alone, every pair of them, and all together, per format."""
    values = {
        "gzip": True, "ignore_header": 1, "time_format": "auto", "date_format": "YYYY-MM-DD",
        "accept_inv_chars": "?", "empty_as_null": True, "blanks_as_null": True, "truncate_columns": True,
        "escape": True, "remove_quotes": True, "fixed_width": (("a", 3),), "delimiter": ";", "max_error": 10,
        "region": "eu-west-1", "stat_update": False, "comp_update": False, "null_as": "\\N",
    }
    assert set(values) == {f.name for f in fields(CopyOptions)} - {"format"}
    for fmt in ("parquet", "csv"):
        base = CopyOptions.for_format(fmt)
        yield base
        allowed = []
        for name, value in values.items():
            try:
                validate_copy_options(replace(base, **{name: value}))
                allowed.append(name)
            except CopyOptionsError:
                continue
        assert allowed  # each format allows some
        for size in (1, 2):
            for names in itertools.combinations(allowed, size):
                yield replace(base, **{n: values[n] for n in names})
        yield replace(base, **{n: values[n] for n in allowed})


def test_every_copy_the_validator_allows_parses_as_redshift() -> None:
    statements = [
        build_copy("stg_tweets", MANIFEST, options, auth, schema=schema).sql
        for options in _allowed_option_sets()
        for auth, schema in ((CopyAuthorization(iam_role_arn=ROLE), None), (KEYS, "analytics"))
    ]
    assert len(statements) > 50
    assert_redshift(statements)


def test_the_gate_rejects_what_redshift_rejects() -> None:
    """The gate itself: PostgreSQL takes these, Redshift does not."""
    assert unparsable("SELECT LOWER(tag) FROM t")  # TAG is reserved in Redshift
    assert not unparsable('SELECT LOWER("tag") FROM t')
    assert unparsable("COPY t FROM STDIN WITH (FORMAT csv, HEADER MATCH)")
