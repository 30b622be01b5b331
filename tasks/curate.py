"""Curated files: per table per day, Parquet and gzip CSV part files plus COPY manifests.

Batches of normalized rows are spooled to local Parquet, split into parts by the table's integer key
(`key % parts`), so a tweet seen on two pages lands in one part and each part is deduplicated on its
own: memory stays bounded by a part, not by the day. Each part is written to the bucket as
`curated/<table>/dt=D/part-NNNNN.parquet` and `.csv.gz`; a manifest per format lists the exact keys
(Redshift's `MANIFEST VERBOSE` layout: url, mandatory, content_length and record_count).
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.bucket import Bucket, StoredObject
from tasks.normalize import NormalizeStats, deduplicate, normalize_raw_file
from tasks.schema import TABLES, Table

CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"  # ISO-8601 UTC, as Redshift TIMEFORMAT 'auto' reads it
FORMATS = ("parquet", "csv")
_LOGGER = logging.getLogger(__name__)


@dataclass
class TableFiles:
    """What was written for one table and day; small enough to pass between tasks."""

    table: str
    day: date
    rows: int = 0
    parquet: list[StoredObject] = field(default_factory=list)
    csv: list[StoredObject] = field(default_factory=list)
    part_rows: list[int] = field(default_factory=list)
    manifests: dict[str, str] = field(default_factory=dict)  # format -> manifest key

    def keys(self, fmt: str) -> list[str]:
        return [o.key for o in (self.parquet if fmt == "parquet" else self.csv)]


def part_count(expected_rows: int, rows_per_file: int) -> int:
    """How many parts a day of `expected_rows` is split into so a part holds about `rows_per_file` rows."""
    return max(1, math.ceil(expected_rows / rows_per_file))


def curated_prefix(table: str, day: date) -> str:
    return f"curated/{table}/dt={day.isoformat()}/"


def manifest_key(table: str, day: date, fmt: str) -> str:
    """`manifests/<table>/dt=D.json` is the Parquet manifest (the default COPY); CSV's adds `.csv`."""
    suffix = ".json" if fmt == "parquet" else f".{fmt}.json"
    return f"manifests/{table}/dt={day.isoformat()}{suffix}"


def parquet_bytes(frame: pl.DataFrame, table: Table) -> bytes:
    buf = io.BytesIO()
    # Written through Arrow with the schema module's Arrow schema, so nullability and types match DDL.
    pq.write_table(frame.to_arrow().cast(table.arrow_schema), buf, compression="zstd")
    return buf.getvalue()


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """RFC 4180 CSV, UTF-8, header, `"` doubled inside quotes; null is an empty unquoted field and an
    empty string is `""`, which PostgreSQL's and Redshift's CSV readers both keep apart."""
    text = frame.write_csv(
        include_header=True,
        quote_style="necessary",
        datetime_format=CSV_DATETIME_FORMAT,
        date_format="%Y-%m-%d",
        line_terminator="\n",
    )
    return gzip.compress(text.encode("utf-8"), compresslevel=5, mtime=0)


def manifest_bytes(bucket: Bucket, objects: list[StoredObject], part_rows: list[int]) -> bytes:
    entries = [
        {"url": bucket.url(o.key), "mandatory": True, "meta": {"content_length": o.size, "record_count": rows}}
        for o, rows in zip(objects, part_rows, strict=True)
    ]
    doc = {
        "entries": entries,
        "meta": {"content_length": sum(o.size for o in objects), "record_count": sum(part_rows)},
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


class DaySpool:
    """Collects normalized batches for one day on local disk, split into parts by key."""

    def __init__(self, day: date, parts: int, workdir: Path | None = None) -> None:
        if parts < 1:
            raise ValueError("parts must be >= 1")
        self.day, self.parts = day, parts
        self._tmp = tempfile.mkdtemp(prefix="x-pipeline-spool-", dir=workdir)
        self.root = Path(self._tmp)
        self._batch = 0

    def add(self, tables: dict[str, pl.DataFrame]) -> None:
        for name, frame in tables.items():
            if frame.is_empty():
                continue
            key = TABLES[name].partition_column
            frame = frame.with_columns((pl.col(key) % self.parts).alias("_part"))
            for (part,), chunk in frame.partition_by("_part", as_dict=True, include_key=False).items():
                path = self.root / name / f"part-{part:05d}" / f"batch-{self._batch:06d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                chunk.write_parquet(path, compression="lz4", statistics=False)
        self._batch += 1

    def part_frames(self, name: str):
        table = TABLES[name]
        base = self.root / name
        for part in range(self.parts):
            files = sorted((base / f"part-{part:05d}").glob("*.parquet"))
            frame = pl.concat([pl.read_parquet(f) for f in files]) if files else table.empty_frame()
            yield part, deduplicate(frame, name)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def write_table_day(bucket: Bucket, spool: DaySpool, name: str) -> TableFiles:
    """Write one table's parts for the day, its manifests, and remove the day's stale keys."""
    table, day = TABLES[name], spool.day
    files = TableFiles(name, day)
    prefix = curated_prefix(name, day)
    for part, frame in spool.part_frames(name):
        if frame.is_empty():
            continue
        stem = f"{prefix}part-{part:05d}"
        files.parquet.append(bucket.write(f"{stem}.parquet", parquet_bytes(frame, table)))
        files.csv.append(bucket.write(f"{stem}.csv.gz", csv_bytes(frame)))
        files.part_rows.append(frame.height)
        files.rows += frame.height
    bucket.replace_prefix(prefix, files.parquet + files.csv)
    for fmt, objects in (("parquet", files.parquet), ("csv", files.csv)):
        key = manifest_key(name, day, fmt)
        bucket.write(key, manifest_bytes(bucket, objects, files.part_rows))
        files.manifests[fmt] = key
    return files


def read_manifest(bucket: Bucket, key: str) -> dict:
    return orjson.loads(bucket.read(key))


@dataclass
class CuratedDay:
    day: date
    tables: dict[str, TableFiles]
    stats: NormalizeStats


def curate_raw_files(
    bucket: Bucket, day: date, raw_keys: list[str], parts: int = 1, logger: logging.Logger | logging.LoggerAdapter | None = None
) -> CuratedDay:
    """Stream the day's raw files through normalize, then write every table's curated files.

    Pure (no Prefect run context needed), so the benchmark times exactly what the task runs.
    """
    logger = logger or _LOGGER
    spool = DaySpool(day, parts)
    stats = NormalizeStats()
    try:
        for n, key in enumerate(raw_keys, 1):
            frames, batch_stats = normalize_raw_file(bucket.read(key), day)
            stats.add(batch_stats)
            spool.add(frames)
            logger.info("normalized %s (%d/%d): %d tweets", key, n, len(raw_keys), batch_stats.tweets_seen)
        tables = {name: write_table_day(bucket, spool, name) for name in TABLES}
    finally:
        spool.cleanup()
    for name, files in tables.items():
        logger.info("%s: %d rows in %d part(s)", name, files.rows, len(files.parquet))
    if stats.skipped:
        logger.warning("skipped rows: %s", stats.skipped)
    return CuratedDay(day, tables, stats)


@task(name="normalize-and-curate", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, persist_result=False)
def curate_day(bucket: Bucket, day: date, raw_keys: list[str], parts: int = 1) -> CuratedDay:
    """Stream the day's raw files through normalize, then write every table's curated files."""
    return curate_raw_files(bucket, day, raw_keys, parts, get_run_logger())
