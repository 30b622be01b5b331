"""The warehouse edge: create tables from the schema module, load a day, merge by primary key.

Every target loads a day the same way, in one transaction per table: fill a staging table with the
day's curated rows, count which keys already exist, delete them from the target, insert the staging
rows (deduplicated by key). A failure anywhere rolls back and leaves the target as it was; running a
day twice leaves the same rows. `DuckDBWarehouse` is the embedded default; PostgreSQL and Redshift
live in `tasks/postgres.py` and `tasks/redshift.py`, chosen by `warehouse_from_block`.
"""

from __future__ import annotations

import io
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.bucket import Bucket, retry_unless_bucket_error
from tasks.curate import TableFiles
from tasks.schema import TABLES, Dialect, Table, qualified, quote_ident

DEFAULT_DUCKDB_PATH = Path("data/warehouse.duckdb")


class WarehouseError(RuntimeError):
    """A load failed; the message names the table and file, never a credential."""


@dataclass(frozen=True)
class MergeResult:
    table: str
    staged: int
    new: int
    updated: int
    total: int


def staging_name(table: Table) -> str:
    return f"stg_{table.name}"


def merge_statements(table: Table, schema: str | None, staging: str) -> dict[str, str]:
    """Portable SQL (DuckDB, PostgreSQL, Redshift) that merges a staging table into the target."""
    target = qualified(table.name, schema)
    stg = quote_ident(staging)
    cols = ", ".join(quote_ident(c) for c in table.column_names)
    keys = ", ".join(quote_ident(k) for k in table.primary_key)
    match = " AND ".join(f"{target}.{quote_ident(k)} = s.{quote_ident(k)}" for k in table.primary_key)
    order = next((c for c in ("fetched_at", "observed_at") if c in table.column_names), table.primary_key[0])
    return {
        "count_existing": f"SELECT COUNT(DISTINCT ({keys})) FROM {stg} s WHERE EXISTS (SELECT 1 FROM {target} WHERE {match})"
        if len(table.primary_key) == 1
        else f"SELECT COUNT(*) FROM (SELECT DISTINCT {keys} FROM {stg}) s WHERE EXISTS (SELECT 1 FROM {target} WHERE {match})",
        "delete": f"DELETE FROM {target} USING {stg} s WHERE {match}",
        "insert": (
            f"INSERT INTO {target} ({cols}) SELECT {cols} FROM ("
            f"SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {quote_ident(order)} DESC) AS \"_rn\" "
            f"FROM {stg}) d WHERE \"_rn\" = 1"
        ),
        "count_target": f"SELECT COUNT(*) FROM {target}",
    }


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
    def describe(self) -> str: ...

    def close(self) -> None:
        pass

    def row_counts(self) -> dict[str, int]:
        return {
            name: self.query(f"SELECT COUNT(*) FROM {qualified(name, self.schema)}")[0][0] for name in TABLES
        }


class DuckDBWarehouse(Warehouse):
    dialect: Dialect = "duckdb"

    def __init__(self, path: Path = DEFAULT_DUCKDB_PATH) -> None:
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))

    def ensure_tables(self) -> None:
        self.execute_script([t.create_sql("duckdb") for t in TABLES.values()])

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

    def load_day(self, bucket: Bucket, files: TableFiles) -> MergeResult:
        table = TABLES[files.table]
        stg = staging_name(table)
        sql = merge_statements(table, None, stg)
        con = self.con
        con.begin()
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(stg)} AS SELECT * FROM {quote_ident(table.name)} LIMIT 0")
            for obj in files.parquet:
                arrow = pq.read_table(io.BytesIO(bucket.read(obj.key)), schema=table.arrow_schema)
                con.register("_part", arrow)
                con.execute(f"INSERT INTO {quote_ident(stg)} SELECT * FROM _part")
                con.unregister("_part")
            staged = con.execute(f"SELECT COUNT(*) FROM {quote_ident(stg)}").fetchone()[0]
            if staged != files.rows:
                raise WarehouseError(
                    f"{table.name} {files.day}: staged {staged} rows but the manifest lists {files.rows}"
                )
            updated = con.execute(sql["count_existing"]).fetchone()[0]
            con.execute(sql["delete"])
            con.execute(sql["insert"])
            total = con.execute(sql["count_target"]).fetchone()[0]
            con.execute(f"DROP TABLE {quote_ident(stg)}")
            con.commit()
        except Exception:
            con.rollback()
            raise
        distinct = staged  # curated parts are already unique by key
        return MergeResult(table.name, staged, distinct - updated, updated, total)

    def describe(self) -> str:
        return f"DuckDB file {self.path}"

    def close(self) -> None:
        self.con.close()


def open_warehouse(block_name: str | None, default_path: Path = DEFAULT_DUCKDB_PATH) -> Warehouse:
    """None opens the embedded DuckDB file; otherwise the named `x-pipeline-warehouse` block."""
    if not block_name:
        return DuckDBWarehouse(default_path)
    from blocks.warehouse import Warehouse as WarehouseBlock

    slug = f"{WarehouseBlock.get_block_type_slug()}/"
    try:
        block = WarehouseBlock.load(block_name.removeprefix(slug), _sync=True)
    except ValueError as exc:
        raise WarehouseError(
            f"warehouse block {block_name!r} was not found; create it with `python -m blocks.create`"
        ) from exc
    return warehouse_from_block(block)


def warehouse_from_block(block: Any) -> Warehouse:
    if block.kind == "duckdb":
        return DuckDBWarehouse(Path(block.url))
    if block.kind == "postgresql":
        from tasks.postgres import PostgresWarehouse, engine_url

        password = block.password.get_secret_value() if block.password else None
        # psycopg2 whatever the URL names: the bulk load uses its COPY FROM STDIN.
        return PostgresWarehouse(engine_url(block.url, password, "postgresql+psycopg2"), block.db_schema)
    if block.kind == "redshift":
        from tasks.redshift import redshift_from_block

        return redshift_from_block(block)
    raise WarehouseError(f"warehouse kind {block.kind!r} is not supported by this version")


# Days processed side by side (flows/backfill.py) merge into the same tables and share keys (users):
# one load at a time per process keeps concurrent merges from conflicting; the rest of a day runs in parallel.
_LOAD_LOCK = threading.Lock()


@task(
    name="load-warehouse",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless_bucket_error,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def load_warehouse(warehouse_block: str | None, bucket: Bucket, tables: dict[str, TableFiles],
                   default_path: Path = DEFAULT_DUCKDB_PATH) -> dict[str, MergeResult]:
    """Create missing tables, then merge every table's day, each in its own transaction."""
    logger = get_run_logger()
    with _LOAD_LOCK:
        warehouse = open_warehouse(warehouse_block, default_path)
        try:
            warehouse.ensure_tables()
            results = {}
            for name, files in tables.items():
                results[name] = warehouse.load_day(bucket, files)
                r = results[name]
                logger.info("%s: staged %d, new %d, updated %d, total %d", name, r.staged, r.new, r.updated, r.total)
            return results
        finally:
            warehouse.close()
