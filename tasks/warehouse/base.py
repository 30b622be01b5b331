"""The warehouse edge: create tables from the schema module, load a day, merge by primary key.

Every target loads a day the same way, in one transaction per table: fill a staging table with the
day's curated rows, then merge them (`merge_statements`): the day's rows are replaced exactly, and an
older copy of a row never replaces a newer one. A failure anywhere rolls back and leaves the target as
it was; running a day twice leaves the same rows. `DuckDBWarehouse` is the embedded default; PostgreSQL
and Redshift live in `tasks/warehouse/postgres.py` and `tasks/warehouse/redshift.py`, chosen by `warehouse_from_block`.
"""

from __future__ import annotations

import io
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.lake.bucket import Bucket
from tasks.lake.curate import TableFiles
from tasks.schema import LOADED_DAYS, TABLES, Column, Dialect, Table, qualified, quote_ident

# Rows per multi-row INSERT of `values_statements`: about 170 KB of SQL for sentiment rows (Redshift takes up to
# 16 MB a statement, and its leader node plans each one, so fewer are better there). PostgreSQL loaded 120,000 sentiment rows this way in
# 1.7-2.8 s with any batch from 500 to 5,000 rows (three interleaved rounds on a busy machine; 0.5 s of it is
# rendering the literals).
VALUES_BATCH = 2_000
# Text a VALUES literal may carry: labels and codes, never free text (no quote, no backslash to escape).
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9 _.:-]*")


class WarehouseError(RuntimeError):
    """A load failed; the message names the table and file, never a credential."""


@dataclass(frozen=True)
class MergeResult:
    table: str
    staged: int
    new: int
    updated: int
    total: int
    older: int = 0  # staged keys not applied: the warehouse holds a newer copy (a later day's)
    removed: int = 0  # rows the day had before and no longer produces


def staging_name(table: Table) -> str:
    return f"stg_{table.name}"


# What `ensure_tables` creates: the data tables and the record of their loads.
LOAD_TABLES: tuple[Table, ...] = (*TABLES.values(), LOADED_DAYS)

# The table whose kept copy of a tweet the tweet's entities and references follow.
PARENT = TABLES["tweets"]


def freshness_column(table: Table) -> str | None:
    """The column that says which copy of a row is newer: `fetched_at`, else `observed_at`; None for the
    tables whose rows follow their tweet's copy (keyed by `tweet_id`, without either column)."""
    found = next((c for c in ("fetched_at", "observed_at") if c in table.column_names), None)
    if found is None and table.primary_key[0] != "tweet_id":
        raise WarehouseError(f"{table.name} has no fetch time and no tweet key: no merge rule applies")
    return found


@dataclass(frozen=True)
class MergeSql:
    updated: str  # counts staged keys that will replace a row of the target
    older: str  # counts staged keys that will not: the target holds a newer copy
    delete: tuple[str, ...]
    insert: str
    count_target: str


def merge_statements(table: Table, schema: str | None, staging: str, day: date) -> MergeSql:
    """Portable SQL (DuckDB, PostgreSQL, Redshift: DELETE ... USING and INSERT ... SELECT, no MERGE) that
    merges the staging table of `day` into the target (run in `run_merge`'s order).

    A day's load replaces that day's rows exactly and never puts an older copy over a newer one:
    - tables with a fetch time (`tweets`, `users`, `tweet_queries`: `fetched_at`; `tweet_metrics_daily`:
      `observed_at`): the target's rows of `day` whose key is not staged are deleted; a staged row replaces
      the target's row of its key when that row is of `day`, or older (`fetched_at`, then `dt`, earlier);
      otherwise the target keeps its newer row (a backfill of an older day changes nothing there).
    - the tables of a tweet's entities and references (no fetch time, keyed by `tweet_id`) follow the copy of
      their tweet that `tweets` keeps: every row of `day`, and every row of a tweet whose kept copy is now
      `day`'s, is deleted; the staged rows of those tweets are inserted. So a tweet's hashtags never mix
      two fetches, and `tweets` must be merged first (`load_warehouse` loads tables in `TABLES` order).
    """
    target = qualified(table.name, schema)
    stg = quote_ident(staging)
    cols = ", ".join(quote_ident(c) for c in table.column_names)
    keys = ", ".join(quote_ident(k) for k in table.primary_key)
    match = " AND ".join(f"{target}.{quote_ident(k)} = s.{quote_ident(k)}" for k in table.primary_key)
    fresh = freshness_column(table)
    order = quote_ident(fresh or table.primary_key[0])
    latest = (
        f"(SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {order} DESC) AS \"_rn\" "
        f"FROM {stg}) r WHERE \"_rn\" = 1) s"
    )
    d, dt = f"DATE '{day.isoformat()}'", quote_ident("dt")
    exists = f"SELECT 1 FROM {target} WHERE {match}"
    if fresh is not None:
        f = quote_ident(fresh)
        replaces = (f"({target}.{dt} = {d} OR s.{f} > {target}.{f} "
                    f"OR (s.{f} = {target}.{f} AND {target}.{dt} < {d}))")
        return MergeSql(
            updated=f"SELECT COUNT(*) FROM {latest} WHERE EXISTS ({exists} AND {replaces})",
            older=f"SELECT COUNT(*) FROM {latest} WHERE EXISTS ({exists} AND NOT {replaces})",
            delete=(
                f"DELETE FROM {target} WHERE {target}.{dt} = {d} AND NOT EXISTS (SELECT 1 FROM {stg} s WHERE {match})",
                f"DELETE FROM {target} USING {stg} s WHERE {match} AND {replaces}",
            ),
            insert=f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {latest} WHERE NOT EXISTS ({exists})",
            count_target=f"SELECT COUNT(*) FROM {target}",
        )
    tweet_id = quote_ident("tweet_id")
    kept = f"SELECT {tweet_id} FROM {qualified(PARENT.name, schema)} WHERE {dt} = {d}"
    return MergeSql(
        updated=f"SELECT COUNT(*) FROM {latest} WHERE s.{tweet_id} IN ({kept}) AND EXISTS ({exists})",
        older=f"SELECT COUNT(*) FROM {latest} WHERE s.{tweet_id} NOT IN ({kept})",
        delete=(f"DELETE FROM {target} WHERE {target}.{dt} = {d} OR {target}.{tweet_id} IN ({kept})",),
        insert=f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {latest} WHERE s.{tweet_id} IN ({kept})",
        count_target=f"SELECT COUNT(*) FROM {target}",
    )


def sql_literal(value: Any, column: Column) -> str:
    """`value` as an SQL literal of `column`'s type, for values the pipeline computed itself (ids, numbers,
    dates, zoned times, plain labels); anything that would need escaping is refused."""
    if value is None:
        if not column.nullable:
            raise WarehouseError(f"{column.name} is NOT NULL but a staged value is null")
        return "NULL"
    if column.kind == "int64":
        return str(int(value))
    if column.kind == "float64":
        if not math.isfinite(value):
            raise WarehouseError(f"{column.name}: {value!r} has no SQL literal")
        return repr(float(value))  # the shortest text that reads back as the same double
    if column.kind == "bool":
        return "TRUE" if value else "FALSE"
    if column.kind == "date":
        return f"DATE '{value.isoformat()}'"
    if column.kind == "timestamp" and isinstance(value, datetime) and value.utcoffset() is not None:
        return f"CAST('{value.isoformat(sep=' ')}' AS TIMESTAMPTZ)"
    if column.kind == "string" and _PLAIN_TEXT.fullmatch(value):
        return f"'{value}'"
    raise WarehouseError(f"{column.name}: {value!r} is not a value a VALUES literal carries here (free text, or a time without zone)")


def values_statements(table: Table, target: str, rows: pa.Table, batch: int = VALUES_BATCH) -> list[str]:
    """Multi-row `INSERT INTO target (columns) VALUES (...), ...` of `rows` (the table's columns), `batch` rows a
    statement: the SQL every warehouse accepts for rows the pipeline computed itself. Only ids, numbers, dates,
    booleans and plain labels are rendered (`sql_literal` refuses anything else), so nothing needs escaping."""
    cols = ", ".join(quote_ident(c.name) for c in table.columns)
    values = [[sql_literal(v, c) for v in rows.column(c.name).to_pylist()] for c in table.columns]
    lines = ["(" + ", ".join(row) + ")" for row in zip(*values, strict=True)]
    return [f"INSERT INTO {target} ({cols}) VALUES\n" + ",\n".join(lines[i:i + batch])
            for i in range(0, len(lines), batch)]


def run_merge(table: Table, sql: MergeSql, run: Callable[[str], Any], staged: int) -> MergeResult:
    """Run the merge through `run` (executes one statement in the load's transaction, returns the first
    value of a query) and count what changed. Staged rows are unique by key (curated parts are)."""
    before = run(sql.count_target)
    updated, older = run(sql.updated), run(sql.older)
    for statement in (*sql.delete, sql.insert):
        run(statement)
    total = run(sql.count_target)
    inserted = staged - older
    removed = before - (total - inserted) - updated
    return MergeResult(table.name, staged, inserted - updated, updated, total, older, removed)


def record_load_statements(files: TableFiles, result: MergeResult, schema: str | None,
                           at: datetime | None = None) -> list[str]:
    """Statements that record the load of `files` in `loaded_days`, run in the load's own transaction (so
    the record is exactly as durable as the rows).

    The row's `version` goes up when the load changed the table's rows: its content is not the last load's
    of the day (or not known), or it brought keys new to the table or removed some of the day's. A day
    loaded again unchanged (a re-run that fetched nothing new) keeps its version, and what was computed
    from it (`analyzed_days`) stays valid. The same content, nothing new and nothing removed is the same
    rows: the day's rows are exactly its content, and a key kept newer elsewhere is not applied either time.
    """
    target = qualified(LOADED_DAYS.name, schema)
    values = {"table_name": files.table, "dt": files.day, "content": files.content, "loaded_at": at or datetime.now(UTC),
              "staged": result.staged, "new": result.new, "updated": result.updated, "removed": result.removed,
              "older": result.older}
    v = {name: sql_literal(value, LOADED_DAYS.column(name)) for name, value in values.items()}
    q = quote_ident
    if files.content is None or result.new or result.removed:
        changed = "TRUE"
    else:
        changed = f"COALESCE({q('content')}, '') <> {v['content']}"
    where = f"{q('table_name')} = {v['table_name']} AND {q('dt')} = {v['dt']}"
    kept = ", ".join(f"{q(name)} = {v[name]}" for name in values if name not in ("table_name", "dt"))
    new = {**v, "version": "1", "changed_at": v["loaded_at"]}
    update = (f"UPDATE {target} SET {q('version')} = {q('version')} + CASE WHEN {changed} THEN 1 ELSE 0 END, "
              f"{q('changed_at')} = CASE WHEN {changed} THEN {v['loaded_at']} ELSE {q('changed_at')} END, {kept} "
              f"WHERE {where}")
    insert = (f"INSERT INTO {target} ({', '.join(q(c) for c in LOADED_DAYS.column_names)}) "
              f"SELECT {', '.join(new[c] for c in LOADED_DAYS.column_names)} "
              f"WHERE NOT EXISTS (SELECT 1 FROM {target} WHERE {where})")
    return [update, insert]


def merge_and_record(files: TableFiles, schema: str | None, run: Callable[[str], Any], staged: int) -> MergeResult:
    """Merge the day of `files` from its staging table and record the load in `loaded_days`, every statement
    through `run` (the load's transaction): what every target's `load_day` does once staging is filled."""
    table = TABLES[files.table]
    result = run_merge(table, merge_statements(table, schema, staging_name(table), files.day), run, staged)
    for sql in record_load_statements(files, result, schema):
        run(sql)
    return result


class Warehouse(ABC):
    dialect: Dialect
    schema: str | None = None

    def design(self, table: Table) -> Table:
        """The table as this target creates it (Redshift may leave its physical design to Redshift)."""
        return table

    @abstractmethod
    def ensure_tables(self) -> None: ...

    @abstractmethod
    def load_day(self, bucket: Bucket, files: TableFiles) -> MergeResult: ...

    @abstractmethod
    def query(self, sql: str, params: Any = None) -> list[tuple]: ...

    @abstractmethod
    def execute_script(self, statements: list[str]) -> None:
        """Run DDL statements in one transaction (views, metrics tables)."""

    @abstractmethod
    def stage_and_run(self, table: Table, rows: pa.Table, statements: list[str]) -> None:
        """In one transaction: make `rows` (the columns of `table`, computed by the pipeline) readable as the
        temporary relation `staging_name(table)`, run `statements` (which read it), then drop it."""

    @abstractmethod
    def describe(self) -> str: ...

    def close(self) -> None:
        pass

    def row_counts(self) -> dict[str, int]:
        return {
            name: self.query(f"SELECT COUNT(*) FROM {qualified(name, self.schema)}")[0][0] for name in TABLES
        }


class DuckDBWarehouse(Warehouse):
    dialect: Dialect = "duckdb"

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))

    def ensure_tables(self) -> None:
        self.execute_script([t.create_sql("duckdb") for t in LOAD_TABLES])

    def execute_script(self, statements: list[str]) -> None:
        self.con.begin()
        try:
            for sql in statements:
                self.con.execute(sql)
            self.con.commit()
        except Exception:
            self.con.rollback()
            raise

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    def stage_and_run(self, table: Table, rows: pa.Table, statements: list[str]) -> None:
        """The Arrow table itself is the staging relation (DuckDB reads it in place): 120,000 sentiment rows
        went in with their INSERT ... SELECT in 0.2 s, where multi-row INSERTs of literals took 14-17 s."""
        stg = staging_name(table)
        self.con.register(stg, rows)
        try:
            self.execute_script(statements)
        finally:
            self.con.unregister(stg)

    def load_day(self, bucket: Bucket, files: TableFiles) -> MergeResult:
        table = TABLES[files.table]
        stg = staging_name(table)
        con = self.con

        def run(sql: str) -> Any:
            row = con.execute(sql).fetchone()
            return row[0] if row else None

        con.begin()
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(stg)} AS SELECT * FROM {quote_ident(table.name)} LIMIT 0")
            for obj in files.parquet:
                arrow = pq.read_table(io.BytesIO(bucket.read(obj.key)), schema=table.arrow_schema)
                con.register("_part", arrow)
                con.execute(f"INSERT INTO {quote_ident(stg)} SELECT * FROM _part")
                con.unregister("_part")
            staged = run(f"SELECT COUNT(*) FROM {quote_ident(stg)}")
            if staged != files.rows:
                raise WarehouseError(
                    f"{table.name} {files.day}: staged {staged} rows but the manifest lists {files.rows}"
                )
            result = merge_and_record(files, None, run, staged)
            con.execute(f"DROP TABLE {quote_ident(stg)}")
            con.commit()
        except Exception:
            con.rollback()
            raise
        return result

    def describe(self) -> str:
        return f"DuckDB file {self.path}"

    def close(self) -> None:
        self.con.close()
