"""Curated files: per table per day, Parquet and gzip CSV part files plus COPY manifests.

Raw files are normalized in batches on worker threads; each batch's rows are spooled to local disk,
split into parts by the table's integer key (`key % parts`), so a tweet seen on two pages lands in one
part and each part is deduplicated on its own: memory stays bounded by a part, not by the day.
`tweet_metrics_daily` is not spooled: it is computed from each deduplicated part of `tweets`. Each part
is written to the bucket as `curated/<table>/dt=D/part-NNNNN.parquet` and `.csv.gz`; a manifest per
format lists the exact keys (Redshift's `MANIFEST VERBOSE` layout: url, mandatory, content_length and
record_count).
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import logging
import math
import os
import re
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import date
from gzip import BadGzipFile
from pathlib import Path
from typing import TypeVar

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq
from isal import igzip
from isal.isal_zlib import IsalError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.lake.bucket import Bucket, StoredObject, retry_unless_bucket_error
from tasks.lake.normalize import (
    NormalizeStats,
    deduplicate,
    normalize_raw_files,
    read_raw_pages,
    tweet_metrics_daily,
)
from tasks.schema import PARQUET_COMPRESSION, TABLES, TWEET_METRICS_DAILY, TWEETS, USERS, Table

CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"  # ISO-8601 UTC, as Redshift TIMEFORMAT 'auto' reads it
CSV_TIME_FORMATS = {"timestamp": CSV_DATETIME_FORMAT, "date": "%Y-%m-%d"}
FORMATS = ("parquet", "csv")
CSV_GZIP_LEVEL = 2  # ISA-L's levels are 0-3; its default 2 compresses a little better than zlib's 1
# Raw files are parsed and normalized about 8 MiB (compressed) at a time: fewer, larger batches cost less
# per row, while one batch in flight per worker keeps memory bounded.
RAW_BATCH_BYTES = 8 << 20
# Tables computed from another table's deduplicated part rather than spooled and sorted on their own.
DERIVED: dict[str, tuple[str, Callable[[pl.DataFrame], pl.DataFrame]]] = {
    TWEET_METRICS_DAILY.name: (TWEETS.name, tweet_metrics_daily),
}
# Tables whose rows repeat across the day's pages (a page includes each user it shows): at 1,000,000 tweets,
# 1.3 million user rows for 250,000 users. A row that a row already spooled supersedes is left out of the spool.
REPEATING = (USERS.name,)
# What reading a raw file that is not whole gzip raises (cut short, bytes changed): no retry reads it whole.
UNREADABLE_RAW = (EOFError, BadGzipFile, IsalError)
_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


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
    # SHA-256 over the Parquet parts' own SHA-256s, in part order: the same rows give the same parts (sorted
    # by key, deterministic encoding), so a load can tell a day that came back unchanged. None: not known.
    content: str | None = None

    def keys(self, fmt: str) -> list[str]:
        return [o.key for o in (self.parquet if fmt == "parquet" else self.csv)]


# A part is the unit of memory of the write step (read, deduplicated and encoded whole). At 1,000,000
# tweets, 8 parts of 125,000 rows took about 250 MiB less peak RSS than 4 of 250,000, at the same speed
# (three interleaved sets of runs); a tweets part is about 10 MiB of Parquet, well inside the 1 MB-1 GB
# that Redshift's COPY is tuned for.
ROWS_PER_FILE = 125_000


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
    pq.write_table(
        frame.to_arrow().cast(table.arrow_schema),
        buf,
        compression=PARQUET_COMPRESSION,
        use_dictionary=[c.name for c in table.columns if c.parquet_dictionary],
        write_statistics=[c.name for c in table.columns if c.parquet_statistics],
    )
    return buf.getvalue()


def csv_bytes(frame: pl.DataFrame, table: Table) -> bytes:
    """RFC 4180 CSV, UTF-8, header, `"` doubled inside quotes; null is an empty unquoted field (PostgreSQL's
    CSV null, and Redshift's with EMPTYASNULL). Normalize leaves no empty string in a nullable column, as
    how Redshift reads a quoted `""` under EMPTYASNULL is undocumented."""
    # Times formatted by polars' vectorized `to_string` cost about half of `write_csv`'s own formatting.
    frame = frame.with_columns(
        _format_repeated(frame[c.name], fmt) if c.few_values else pl.col(c.name).dt.to_string(fmt)
        for c in table.columns
        if (fmt := CSV_TIME_FORMATS.get(c.kind))
    )
    buf = io.BytesIO()
    # gzip was most of a CSV part's cost: ISA-L writes the same format with about a tenth of zlib's CPU.
    # Compressed as polars writes it (in chunks of a few MiB), the whole text is never held at once.
    with igzip.IGzipFile(fileobj=buf, mode="wb", compresslevel=CSV_GZIP_LEVEL, mtime=0) as gz:
        frame.write_csv(gz, include_header=True, quote_style="necessary", line_terminator="\n")
    return buf.getvalue()


def _format_repeated(times: pl.Series, fmt: str) -> pl.Expr:
    """Format each distinct time once and map the rows to its text: for a column like `fetched_at` (one
    value per page) or `dt` (one a day) several times cheaper than formatting every row, and the same text."""
    distinct = times.unique()
    return pl.col(times.name).replace_strict(distinct, distinct.dt.to_string(fmt), return_dtype=pl.String)


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


SPOOL_PREFIX = "x-pipeline-spool-"
_SPOOL_NAME = re.compile(rf"{SPOOL_PREFIX}(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: checks the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_dead_spools(parent: Path) -> list[Path]:
    """Remove the spool folders in `parent` whose owning process is gone (a killed run never removes its
    own); returns them. Decided by PID rather than by age: a live run of any length keeps its folder, and a
    killed run's is removed by the next run. A reused PID only keeps a dead folder until that process ends."""
    removed = []
    for path in parent.glob(f"{SPOOL_PREFIX}*"):
        if (match := _SPOOL_NAME.match(path.name)) and path.is_dir() and not _alive(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        _LOGGER.info("removed %d spool folder(s) of runs that were killed: %s", len(removed), removed)
    return removed


class DaySpool:
    """Collects normalized batches for one day on local disk, split into parts by key.

    One uncompressed Arrow IPC file per table and batch, holding one record batch per part, so reading
    a part memory-maps only its own bytes of each file: no copy into fresh memory, about a tenth less CPU
    for the whole curate step than reading them (two sets of four interleaved runs), for 60-90 MiB more
    peak RSS. Written at memory speed, and never leaving the machine. (A file per table, part and batch
    cost about half as much again in per-file overhead.)
    `add` is safe to call from several threads, each with its own batch number.

    For a `REPEATING` table, the spool keeps the winning fetch of each key so far (`fetched_at`, then
    batch), and `add` leaves out rows that one already spooled supersedes: the deduplicated parts are the
    same, with about three quarters fewer user rows to spool, read and sort when batches come newest first.
    """

    def __init__(self, day: date, parts: int, workdir: Path | None = None) -> None:
        if parts < 1:
            raise ValueError("parts must be >= 1")
        self.day, self.parts = day, parts
        parent = Path(workdir or tempfile.gettempdir())
        remove_dead_spools(parent)
        # The owner's PID in the name lets a later run tell a killed run's folder from a live one's.
        self.root = Path(tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=parent))
        self._batch = 0
        self._files: dict[str, list[tuple[int, Path]]] = {}  # table -> (batch, file)
        self._winners: dict[str, pl.DataFrame] = {}  # REPEATING table -> key, fetched_at, _batch
        self._lock = threading.Lock()

    def add(self, tables: dict[str, pl.DataFrame], batch: int | None = None) -> None:
        """Spool one batch; `batch` orders batches (a later batch wins a dedupe tie), default: next."""
        with self._lock:
            if batch is None:
                batch, self._batch = self._batch, self._batch + 1
        for name, frame in tables.items():
            if name in REPEATING:
                frame = self._drop_superseded(name, frame, batch)
            if frame.is_empty() or name in DERIVED:
                continue
            chunks = [frame]
            if self.parts > 1:
                part = (pl.col(TABLES[name].partition_column) % self.parts).alias("_part")
                by_part = frame.with_columns(part).partition_by("_part", as_dict=True, include_key=False)
                chunks = [by_part.get((p,), frame.clear()) for p in range(self.parts)]
            # Arrow's own writer, one record batch per part: polars' `write_ipc` merges and splits chunks
            # into record batches of its own sizes.
            batches = [c.to_arrow(compat_level=pl.CompatLevel.oldest()).combine_chunks() for c in chunks]
            path = self.root / f"{name}-{batch:06d}.arrow"
            with pa_ipc.new_file(path, batches[0].schema) as writer:
                for table in batches:
                    [record_batch] = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
                    writer.write_batch(record_batch)
            with self._lock:
                self._files.setdefault(name, []).append((batch, path))

    def _drop_superseded(self, name: str, frame: pl.DataFrame, batch: int) -> pl.DataFrame:
        """`frame` without the rows that a spooled row supersedes: same key, and fetched later, or as late
        in a later batch (the row `deduplicate` would keep instead). Only rows proven superseded go; a null
        `fetched_at` is never compared."""
        [key] = TABLES[name].primary_key
        with self._lock:
            winners = self._winners.get(name)
        if winners is not None:
            seen = frame.select(key, "fetched_at").join(
                winners, on=key, how="left", suffix="_won", maintain_order="left"
            )
            won_at, fetched_at = seen["fetched_at_won"], seen["fetched_at"]
            superseded = (won_at > fetched_at) | ((won_at == fetched_at) & (seen["_batch"] > batch))
            if superseded.any():
                frame = frame.filter(~superseded.fill_null(False))
        # What is left beats every winner it was compared with, so it replaces them. A winner that another
        # thread recorded meanwhile may be replaced by an older row: that only leaves more rows to spool.
        latest = (
            frame.select(key, "fetched_at").drop_nulls().group_by(key).agg(pl.col("fetched_at").max())
            .with_columns(pl.lit(batch, dtype=pl.Int64).alias("_batch"))
        )
        with self._lock:
            winners = self._winners.get(name)
            self._winners[name] = latest if winners is None else pl.concat(
                [winners.join(latest, on=key, how="anti"), latest]
            )
        return frame

    def part_frame(self, name: str, part: int) -> pl.DataFrame:
        """One part of a table, deduplicated."""
        with self._lock:
            files = sorted(self._files.get(name, ()))
        batches = []
        for _, path in files:
            with pa.memory_map(str(path)) as source:
                batches.append(pa_ipc.open_file(source).get_batch(part))
        if not any(b.num_rows for b in batches):
            return TABLES[name].empty_frame()
        return deduplicate(pl.from_arrow(pa.Table.from_batches(batches)), name)  # type: ignore[arg-type]

    def part_frames(self, name: str) -> Iterator[tuple[int, pl.DataFrame]]:
        for part in range(self.parts):
            yield part, self.part_frame(name, part)

    def release(self, name: str) -> None:
        """Remove a table's spool files once every part of it has been read."""
        with self._lock:
            files = self._files.pop(name, [])
        for _, path in files:
            path.unlink(missing_ok=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def default_workers() -> int:
    """One worker per core this process may use, plus one, at most 4 (each holds a batch or a part).

    The extra worker keeps every core busy while another waits on the calling thread, which reads the
    raw files and writes to the bucket: on 2 cores, 3 workers took 0.1-0.7 s less per 1,000,000 tweets
    than 2 (interleaved pairs of runs on two days), for about 200 MiB more peak RSS.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(4, cores + 1)


def retain_freed_heap() -> None:
    """Have glibc keep freed heap memory for reuse rather than hand it back to the kernel at once.

    By default a worker thread's heap is trimmed as soon as about two raw files' worth is free at its
    top, so every batch's inflated pages (~6 MiB a raw file) are faulted in afresh, at a cost in system
    CPU that is high on this VM. With up to 64 MiB kept per heap, at 1,000,000 tweets: 0.7 s less system
    CPU, 3-4% less wall time, about 100 MiB more peak RSS (four interleaved pairs of runs, twice).
    Process-wide and harmless to repeat; a no-op outside glibc.
    """
    try:
        libc_version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):  # no such name (or no `confstr`) outside glibc systems
        return
    if not libc_version.startswith("glibc"):
        return
    libc = ctypes.CDLL(None)  # the C library this process already uses
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 << 20)  # blocks up to 32 MiB come from the heap, not their own mmap
    libc.mallopt(m_trim_threshold, 64 << 20)


def _bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ordered: bool = True) -> Iterator[R]:
    """`map` on a thread pool with at most `2 * workers` items in flight (bounded memory); results come
    in the items' order, or as they complete when not `ordered` (no worker waits on a slow head item).

    `concurrent.futures.Executor.map` submits every item up front, which would hold the whole day.
    Polars and Arrow release the GIL while they work, so threads use every core without copying data.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="curate") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                if ordered:
                    yield pending.popleft().result()
                else:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        pending.remove(future)
                        yield future.result()
        for future in pending if ordered else as_completed(pending):
            yield future.result()


@dataclass
class _EncodedPart:
    name: str
    part: int
    rows: int
    parquet: bytes
    csv: bytes
    parquet_sha256: bytes


def _encode(name: str, part: int, frame: pl.DataFrame) -> _EncodedPart:
    table = TABLES[name]
    parquet = parquet_bytes(frame, table)
    return _EncodedPart(name, part, frame.height, parquet, csv_bytes(frame, table), hashlib.sha256(parquet).digest())


def _encode_part(spool: DaySpool, name: str, part: int, derived: list[str]) -> list[_EncodedPart]:
    """One part of table `name`, and the same part of each of the `derived` tables computed from it."""
    frame = spool.part_frame(name, part)
    if frame.is_empty():
        return []
    return [_encode(name, part, frame)] + [_encode(d, part, DERIVED[d][1](frame)) for d in derived]


def write_tables(
    bucket: Bucket, spool: DaySpool, names: Iterable[str], workers: int = 1
) -> dict[str, TableFiles]:
    """Write the tables' parts for the day (encoded on `workers` threads), then their manifests, then
    remove the day's stale keys. Bucket writes stay on the calling thread.

    A table's old manifests are removed before its first new part is written: a run that fails half-way
    leaves that day without a manifest rather than one listing a mix of old and new parts.
    """
    names = list(names)
    files = {name: TableFiles(name, spool.day) for name in names}
    derived = {name: [d for d in names if d in DERIVED and DERIVED[d][0] == name] for name in names}
    # Part by part across the tables, so the workers encode one large tweets part beside smaller parts of
    # other tables rather than several tweets parts at once (peak RSS at 1,000,000 tweets: ~200 MiB less).
    units = [(name, part, derived[name]) for part in range(spool.parts) for name in names if name not in DERIVED]
    parts_to_read = {name: spool.parts for name in names if name not in DERIVED}
    written: dict[str, list[tuple[int, StoredObject, StoredObject, int, bytes]]] = {name: [] for name in names}
    cleared: set[str] = set()

    def clear_manifests(name: str) -> None:
        """Remove the day's old manifests before the table's first new object is written."""
        if name not in cleared:
            bucket.delete([manifest_key(name, spool.day, fmt) for fmt in FORMATS])  # absent keys are no error
            cleared.add(name)

    def encode_unit(unit: tuple[str, int, list[str]]) -> tuple[str, list[_EncodedPart]]:
        return unit[0], _encode_part(spool, *unit)

    # Written as they are encoded: in order, the small parts finished beside a large one waited for it,
    # and so did the idle workers (the write phase kept 1.65 of 2 cores busy, now about 1.85).
    for name, unit_parts in _bounded_map(encode_unit, units, workers, ordered=False):
        parts_to_read[name] -= 1
        if not parts_to_read[name]:
            spool.release(name)
        for encoded in unit_parts:
            clear_manifests(encoded.name)
            stem = f"{curated_prefix(encoded.name, spool.day)}part-{encoded.part:05d}"
            parquet = bucket.write(f"{stem}.parquet", encoded.parquet)
            csv = bucket.write(f"{stem}.csv.gz", encoded.csv)
            written[encoded.name].append((encoded.part, parquet, csv, encoded.rows, encoded.parquet_sha256))
    for name, table_files in files.items():
        content = hashlib.sha256()
        for _, parquet, csv, rows, digest in sorted(written[name], key=lambda p: p[0]):  # manifests list parts in order
            table_files.parquet.append(parquet)
            table_files.csv.append(csv)
            table_files.part_rows.append(rows)
            table_files.rows += rows
            content.update(digest)
        table_files.content = content.hexdigest()
        clear_manifests(name)
        for fmt, objects in (("parquet", table_files.parquet), ("csv", table_files.csv)):
            key = manifest_key(name, spool.day, fmt)
            bucket.write(key, manifest_bytes(bucket, objects, table_files.part_rows))
            table_files.manifests[fmt] = key
        bucket.replace_prefix(curated_prefix(name, spool.day), table_files.parquet + table_files.csv)
    return files


def read_manifest(bucket: Bucket, key: str) -> dict:
    return orjson.loads(bucket.read(key))


@dataclass
class CuratedDay:
    day: date
    tables: dict[str, TableFiles]
    stats: NormalizeStats
    unreadable_files: list[str] = field(default_factory=list)  # raw keys left out: not whole gzip


def _unreadable(data: bytes) -> bool:
    try:
        read_raw_pages(data)
    except UNREADABLE_RAW:
        return True
    return False


RawBatch = tuple[int, list[str], list[bytes]]  # number, keys, the files' bytes


def _raw_batches(bucket: Bucket, raw_keys: list[str], batch_bytes: int) -> Iterator[RawBatch]:
    """Batches of about `batch_bytes` of raw files, the last files (the latest fetched) first, so that the
    spool can leave out the rows they supersede (`REPEATING`). Each batch holds its files in `raw_keys`
    order and is numbered by its first file's position there: a higher number is a later batch."""
    batch: list[str] = []
    data: list[bytes] = []
    size = 0
    for position in range(len(raw_keys) - 1, -1, -1):
        batch.append(raw_keys[position])
        data.append(bucket.read(raw_keys[position]))
        size += len(data[-1])
        if size >= batch_bytes or position == 0:
            yield position, batch[::-1], data[::-1]
            batch, data, size = [], [], 0


def curate_raw_files(
    bucket: Bucket,
    day: date,
    raw_keys: list[str],
    parts: int = 1,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
    workers: int | None = None,
    batch_bytes: int = RAW_BATCH_BYTES,
) -> CuratedDay:
    """Stream the day's raw files through normalize, then write every table's curated files.

    A raw file that is not whole gzip is left out and named in `unreadable_files` (the flow then does not
    mark the day done): reading it again cannot help, and the rest of the day is still curated.
    Raw files are read on the calling thread, the last first, and normalized in batches on `workers`
    threads, then the tables' parts are encoded on as many. Pure (no Prefect run context needed), so the
    benchmark times exactly what the task runs.
    """
    logger = logger or _LOGGER
    workers = workers or default_workers()
    retain_freed_heap()
    spool = DaySpool(day, parts)
    stats = NormalizeStats()

    unreadable: list[str] = []

    def normalize_batch(batch: RawBatch) -> tuple[list[str], NormalizeStats, list[str]]:
        """The batch's keys, normalize stats and the keys of files left out as unreadable."""
        number, keys, data = batch
        bad: list[str] = []
        try:
            frames, batch_stats = normalize_raw_files(data, day)
        except UNREADABLE_RAW:
            # Rare: find the damaged files, then normalize the rest of the batch without them.
            files = dict(zip(keys, data, strict=True))
            bad = [k for k, d in files.items() if _unreadable(d)]
            frames, batch_stats = normalize_raw_files([d for k, d in files.items() if k not in bad], day)
        spool.add(frames, batch=number)
        return keys, batch_stats, bad

    try:
        done = 0
        batches = _raw_batches(bucket, raw_keys, batch_bytes)
        for keys, batch_stats, bad in _bounded_map(normalize_batch, batches, workers):
            stats.add(batch_stats)
            done += len(keys)
            logger.info("normalized %s (%d/%d files): %d tweets", keys[-1], done, len(raw_keys), batch_stats.tweets_seen)
            for key in bad:
                logger.error("raw file %s is not whole gzip (cut short or damaged): left out of the day", key)
            unreadable += bad
        tables = write_tables(bucket, spool, TABLES, workers)
    finally:
        spool.cleanup()
    for name, files in tables.items():
        logger.info("%s: %d rows in %d part(s)", name, files.rows, len(files.parquet))
    if stats.skipped:
        logger.warning("skipped rows: %s", stats.skipped)
    if stats.cleaned:
        logger.warning("values changed by the string rules: %s", stats.cleaned)
    return CuratedDay(day, tables, stats, sorted(unreadable))


@task(
    name="normalize-and-curate",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_bucket_error,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def curate_day(bucket: Bucket, day: date, raw_keys: list[str], parts: int = 1) -> CuratedDay:
    """Stream the day's raw files through normalize, then write every table's curated files."""
    return curate_raw_files(bucket, day, raw_keys, parts, get_run_logger())
