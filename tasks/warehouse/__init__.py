"""The warehouse edge: one interface (`Warehouse`, tasks/warehouse/base.py) over DuckDB, PostgreSQL and
Redshift, chosen by the run's warehouse block (none: a DuckDB file under the local folder).

Stages receive a `WarehouseTarget`: the block resolved once per run, connected by each stage for as
long as it needs (a DuckDB file is locked while open, so it is not held between stages).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.warehouse import Warehouse as WarehouseBlock
from tasks.lake.bucket import Bucket, retry_unless_bucket_error
from tasks.lake.curate import TableFiles
from tasks.schema import TABLES
from tasks.warehouse.base import DuckDBWarehouse, MergeResult, Warehouse, WarehouseError
from tasks.warehouse.postgres import PostgresWarehouse, block_timeouts, engine_url
from tasks.warehouse.redshift import redshift_from_block

__all__ = ["MergeResult", "Warehouse", "WarehouseError", "WarehouseTarget", "load_warehouse",
           "warehouse_from_block"]

DUCKDB_FILE = "warehouse.duckdb"


def warehouse_from_block(block: WarehouseBlock) -> Warehouse:
    if block.kind == "duckdb":
        return DuckDBWarehouse(Path(block.url))
    if block.kind == "postgresql":
        password = block.password.get_secret_value() if block.password else None
        # psycopg2 whatever the URL names: the bulk load uses its COPY FROM STDIN.
        return PostgresWarehouse(engine_url(block.url, password, "postgresql+psycopg2"), block.db_schema,
                                 block_timeouts(block))
    if block.kind == "redshift":
        return redshift_from_block(block)
    raise WarehouseError(f"warehouse kind {block.kind!r} is not supported by this version")


@dataclass(frozen=True)
class WarehouseTarget:
    """The run's warehouse: its block, or the embedded DuckDB file under `local_root`."""

    block: WarehouseBlock | None
    local_root: Path

    @property
    def duckdb_path(self) -> Path:
        return self.local_root / DUCKDB_FILE

    def describe(self) -> str:
        if self.block is None:
            return f"DuckDB file {self.duckdb_path.resolve()}"
        name = getattr(self.block, "_block_document_name", None)
        return f"{self.block.kind} warehouse block {name}" if name else f"{self.block.kind} warehouse"

    @contextmanager
    def connect(self) -> Iterator[Warehouse]:
        warehouse = DuckDBWarehouse(self.duckdb_path) if self.block is None else warehouse_from_block(self.block)
        try:
            yield warehouse
        finally:
            warehouse.close()


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
def load_warehouse(target: WarehouseTarget, bucket: Bucket, tables: dict[str, TableFiles]) -> dict[str, MergeResult]:
    """Create missing tables, then merge every table's day, each in its own transaction."""
    logger = get_run_logger()
    with _LOAD_LOCK, target.connect() as warehouse:
        warehouse.ensure_tables()
        results = {}
        # In `TABLES` order: a tweet's entities and references follow what `tweets` kept (merge_statements).
        for name in (n for n in TABLES if n in tables):
            results[name] = warehouse.load_day(bucket, tables[name])
            r = results[name]
            logger.info("%s: staged %d, new %d, updated %d, kept newer %d, removed %d, total %d",
                        name, r.staged, r.new, r.updated, r.older, r.removed, r.total)
        return results
