"""Raw landing: every page exactly as the source returned it, before anything else can fail.

A raw file is gzip JSON lines, one page per line: `{"request": {...}, "status": 200, "body": {...}}`,
where `request` names the source, endpoint, query, params and `fetched_at`. Raw pages are the source
of truth: normalize reads them back from the bucket, so a replay of a day runs the same code.
Each query's landing for a day also keeps a record next to its pages, `_landed.json`: `complete: false`
with a reason from the moment it starts until it has finished (tasks/runs/completeness.py reads it).

The page-source contract (`PageSource`, `FetchedPage`) is defined here, with the lake that lands the
pages: the sources edge (tasks/sources) implements it, so sources depend on the lake, never the reverse.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Protocol, runtime_checkable

import orjson
from prefect import State, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from tasks.lake.bucket import Bucket, StoredObject, retry_unless_bucket_error

LANDING_RECORD = "_landed.json"
PAGES_PER_FILE = 50  # pages in one raw file
MAX_TWEETS_PER_PAGE = 100  # X API v2's largest max_results, which the sources ask for
UNFINISHED = "its landing started but has not finished (interrupted, or still running)"


@dataclass
class FetchedPage:
    """One answer of the source: a parsed body, or the raw text of a body that did not parse."""

    request: dict[str, Any]
    body: dict[str, Any] | None
    status: int = 200
    raw_text: str | None = None

    @property
    def tweet_count(self) -> int:
        return len((self.body or {}).get("data") or ())

    @property
    def api_error_count(self) -> int:
        return len((self.body or {}).get("errors") or ())


class PermanentSourceError(RuntimeError):
    """A source failure no retry can fix (a rejected token, a bad query): the task fails at once."""


class PageSource(Protocol):
    name: str

    def pages(self, query: str, day: date) -> Iterator[FetchedPage]: ...


@runtime_checkable
class WatermarkedSource(Protocol):
    """A source that fetches only what is new since its stored watermark (the X API source).

    It lands its own batches, because the watermark may only advance once a batch is in the bucket.
    """

    name: str

    def pages(self, query: str, day: date) -> Iterator[FetchedPage]: ...

    def land(self, bucket: Bucket, query: str, day: date, pages_per_file: int) -> LandedQuery: ...


@dataclass
class LandedQuery:
    """What one landing (or, as a day's landing record, every landing of the day) put in the bucket."""

    source: str
    query: str
    keys: list[str] = field(default_factory=list)
    error_keys: list[str] = field(default_factory=list)
    pages: int = 0
    tweets: int = 0
    api_errors: int = 0
    bytes: int = 0
    complete: bool = False
    reason: str | None = None  # why the day's pages of the query are not all landed

    def add(self, part: LandedQuery) -> None:
        """Count a batch landed for the same query and day."""
        self.keys += part.keys
        self.error_keys += part.error_keys
        for name in ("pages", "tweets", "api_errors", "bytes"):
            setattr(self, name, getattr(self, name) + getattr(part, name))


def slugify(text: str) -> str:
    """A readable, collision-safe key part for a query (`#DataEng lang:en` -> `dataeng-lang-en-1c2b...`)."""
    readable = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "query"
    return f"{readable}-{zlib.crc32(text.encode()):08x}"


def raw_prefix(source: str, query: str, day: date) -> str:
    return f"raw/{source}/{slugify(query)}/dt={day.isoformat()}/"


def error_prefix(source: str, query: str, day: date) -> str:
    return f"errors/{source}/{slugify(query)}/dt={day.isoformat()}/"


def landing_key(source: str, query: str, day: date) -> str:
    """The day's landing record of a query, next to its raw pages (curate reads only `.jsonl.gz` there)."""
    return raw_prefix(source, query, day) + LANDING_RECORD


def read_landing(bucket: Bucket, key: str) -> LandedQuery | None:
    if (found := bucket.read_tagged(key)) is None:  # one read, which also says whether it exists
        return None
    doc = orjson.loads(found[0])
    doc.pop("day")
    return LandedQuery(**doc)


def write_landing(bucket: Bucket, day: date, landed: LandedQuery) -> None:
    # No timestamps: a re-run of a deterministic source writes the same bytes.
    record = {"day": day.isoformat(), **asdict(landed)}
    key = landing_key(landed.source, landed.query, day)
    bucket.write(key, orjson.dumps(record, option=orjson.OPT_INDENT_2))


def mark_unfinished(bucket: Bucket, source: str, query: str, day: date, reason: str) -> LandedQuery:
    """Record, before landing starts or once it failed, that the day's pages of `query` are not all in the
    bucket, keeping what earlier landings of the day recorded."""
    landed = read_landing(bucket, landing_key(source, query, day)) or LandedQuery(source, query)
    landed.complete, landed.reason = False, reason
    write_landing(bucket, day, landed)
    return landed


def encode_pages(pages: Iterable[FetchedPage]) -> bytes:
    lines = b"".join(
        orjson.dumps({"request": p.request, "status": p.status, "body": p.body}) + b"\n" for p in pages
    )
    # mtime=0 keeps the bytes, and so the object, identical when a day is re-run.
    return gzip.compress(lines, compresslevel=5, mtime=0)


def iter_raw_lines(data: bytes) -> Iterator[dict[str, Any]]:
    for line in gzip.decompress(data).splitlines():
        if line.strip():
            yield orjson.loads(line)


def land_pages(
    bucket: Bucket,
    source: str,
    query: str,
    day: date,
    pages: Iterable[FetchedPage],
    pages_per_file: int = PAGES_PER_FILE,
    replace: bool = True,
    run_tag: str = "",
) -> LandedQuery:
    """Write `pages` under the day's raw prefix, `pages_per_file` per object, as they arrive.

    With `replace`, keys of an earlier run of the same day that this run did not write are removed,
    so a re-run overwrites rather than adds. Incremental sources land several batches a day with
    `replace=False` and a deterministic `run_tag` that starts every key, so batches never collide.
    """
    landed = LandedQuery(source, query)
    prefix, err_prefix = raw_prefix(source, query, day), error_prefix(source, query, day)
    written: list[StoredObject] = []
    errors_written: list[StoredObject] = []
    batch: list[FetchedPage] = []

    def flush() -> None:
        if batch:
            obj = bucket.write(f"{prefix}{run_tag}part-{len(written):05d}.jsonl.gz", encode_pages(batch))
            written.append(obj)
            landed.bytes += obj.size
            batch.clear()

    for page in pages:
        landed.pages += 1
        if page.body is None:
            obj = bucket.write(
                f"{err_prefix}{run_tag}page-{landed.pages:05d}.json",
                orjson.dumps({"request": page.request, "status": page.status, "raw_text": page.raw_text}),
            )
            errors_written.append(obj)
            continue
        landed.tweets += page.tweet_count
        landed.api_errors += page.api_error_count
        batch.append(page)
        if len(batch) >= pages_per_file:
            flush()
    flush()
    if replace:
        # The landing record stays: it says `complete: false` until the caller records the landing whole.
        bucket.replace_prefix(prefix, [*written, StoredObject(landing_key(source, query, day), 0)])
        bucket.replace_prefix(err_prefix, errors_written)
    landed.keys = [o.key for o in written]
    landed.error_keys = [o.key for o in errors_written]
    return landed


def landed_raw_keys(bucket: Bucket, day: date, source: str | None = None) -> list[str]:
    """Every raw page file landed for `day` (from `source`, or any source for a replay)."""
    marker = f"/dt={day.isoformat()}/"
    prefix = f"raw/{source}/" if source else "raw/"
    return [k for k in bucket.list(prefix) if marker in k and k.endswith(".jsonl.gz")]


def landed_error_keys(bucket: Bucket, day: date, source: str | None = None) -> list[str]:
    """Every page landed for `day` under `errors/` (not JSON), from `source` or any source."""
    marker = f"/dt={day.isoformat()}/"
    return [k for k in bucket.list(f"errors/{source}/" if source else "errors/") if marker in k]


def retry_unless_permanent(task: object, task_run: object, state: State) -> bool:
    """Task retries are for transient failures; a rejected token or query, or a bucket the user must
    fix (access denied, no such bucket), fails at once."""
    if isinstance(state.result(raise_on_failure=False), PermanentSourceError):
        return False
    return retry_unless_bucket_error(task, task_run, state)


@task(
    name="fetch-and-land",
    task_run_name="land-{source.name}-{query}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_unless_permanent,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def fetch_and_land(source: PageSource, bucket: Bucket, query: str, day: date,
                   pages_per_file: int = PAGES_PER_FILE) -> LandedQuery:
    """Fetch one query's pages for `day` and land them raw, logging progress as pages arrive."""
    logger = get_run_logger()

    def logged(pages: Iterable[FetchedPage]) -> Iterator[FetchedPage]:
        for n, page in enumerate(pages, 1):
            if n % 25 == 0:
                logger.info("%s %r: %d pages so far", source.name, query, n)
            yield page

    try:
        if isinstance(source, WatermarkedSource):
            # It saves its watermark and the day's landing record after each landed batch, so it lands its
            # own batches (and logs them).
            landed = source.land(bucket, query, day, pages_per_file)
        else:
            mark_unfinished(bucket, source.name, query, day, UNFINISHED)
            pages = logged(source.pages(query, day))
            landed = land_pages(bucket, source.name, query, day, pages, pages_per_file)
            landed.complete = True
            write_landing(bucket, day, landed)
    except Exception as exc:
        mark_unfinished(bucket, source.name, query, day, f"landing failed: {type(exc).__name__}: {exc}")
        raise
    logger.info(
        "landed %d pages, %d tweets (%d partial API errors, %d malformed) for %r in %d objects%s",
        landed.pages, landed.tweets, landed.api_errors, len(landed.error_keys), query, len(landed.keys),
        "" if landed.complete else f"; the day is not complete: {landed.reason}",
    )
    return landed
