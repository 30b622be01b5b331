"""The daily X pipeline: fetch -> land raw -> normalize -> curated files -> warehouse -> summary.

Run it locally with `python -m flows.daily` (embedded defaults: bundled sample pages, a local folder
as the bucket, a DuckDB file as the warehouse) or deploy it with `prefect deploy` (see prefect.yaml).
`daily` decides which days to process; `process_day` is one day's story, a subflow per day.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.runtime import flow_run

from tasks.bucket import BucketError, load_bucket
from tasks.catchup import days_to_process
from tasks.completeness import require_complete_landing
from tasks.curate import ROWS_PER_FILE, curate_day, part_count
from tasks.dashboard import analyze_and_publish
from tasks.land import LandedQuery, fetch_and_land, landed_raw_keys
from tasks.source import PageSource, PermanentSourceError, SampleSource
from tasks.summary import RunSummary, build_summary, publish_summary
from tasks.warehouse import DEFAULT_DUCKDB_PATH, WarehouseError, load_warehouse
from tasks.x_api import XApiSource, load_bearer_token, timeline_target

DEFAULT_QUERIES = ["#DataEng", "prefect polars", "(redshift OR s3) lang:en"]
SourceName = Literal["sample", "x_api", "replay"]


def utc_today() -> date:
    return datetime.now(UTC).date()


def daily_run_name() -> str:
    """`daily-YYYY-MM-DD`: the explicit day, else the UTC date the run starts (never `daily-None`)."""
    day = flow_run.parameters.get("day")
    return f"daily-{day or utc_today()}"


def open_source(
    source: SourceName,
    sample_tweets: int,
    x_token_block: str | None,
    x_lookback_hours: float = 72,
    x_api_base_url: str | None = None,
) -> PageSource | None:
    if source == "sample":
        return SampleSource(tweets_per_query=sample_tweets)
    if source == "x_api":
        return XApiSource(load_bearer_token(x_token_block), lookback=timedelta(hours=x_lookback_hours),
                          api_base_url=x_api_base_url)
    if source == "replay":
        return None
    raise ValueError(f"unknown source {source!r} (choose sample, x_api or replay)")


@flow(name="x-day", flow_run_name="day-{day}", persist_result=False)
def process_day(
    day: date,
    queries: list[str] = DEFAULT_QUERIES,
    accounts: list[str] | None = None,
    source: SourceName = "sample",
    bucket_block: str | None = None,
    warehouse_block: str | None = None,
    x_token_block: str | None = None,
    x_lookback_hours: float = 72,
    x_api_base_url: str | None = None,
    sample_tweets: int = 400,
    rows_per_file: int = ROWS_PER_FILE,
    local_root: str = "data",
) -> RunSummary:
    """One UTC day: fetch and land raw pages, normalize and curate, load the warehouse, analyze and
    publish the dashboard, summarize."""
    logger = get_run_logger()
    root = Path(local_root)
    seconds: dict[str, float] = {}
    bucket = load_bucket(bucket_block, root / "lake")
    logger.info("processing %s from %s into %s", day, source, bucket.describe())

    started = time.perf_counter()
    page_source = open_source(source, sample_tweets, x_token_block, x_lookback_hours, x_api_base_url)
    landed: list[LandedQuery] = []
    if page_source is not None:
        targets = [*queries, *(timeline_target(a) for a in accounts or ())]
        landed = [fetch_and_land(page_source, bucket, t, day) for t in targets]
    # Curate from everything landed for the day (replay: from any source), not only this run's pages.
    raw_keys = landed_raw_keys(bucket, day, None if page_source is None else page_source.name)
    if page_source is None and not raw_keys:
        raise FileNotFoundError(f"nothing to replay: no raw pages for {day} in {bucket.describe()}")
    # A day with a query landed only in part is not loaded, and gets no run summary (tasks/completeness.py).
    require_complete_landing(bucket, day, None if page_source is None else page_source.name,
                             [q.query for q in landed])
    seconds["fetch+land"] = time.perf_counter() - started

    started = time.perf_counter()
    # Raw files hold up to 50 pages of up to 100 tweets: size the parts before counting rows exactly.
    expected_rows = sum(q.tweets for q in landed) or 50 * 100 * len(raw_keys)
    curated = curate_day(bucket, day, raw_keys, parts=part_count(expected_rows, rows_per_file))
    seconds["normalize+curate"] = time.perf_counter() - started

    started = time.perf_counter()
    duckdb_path = root / DEFAULT_DUCKDB_PATH.name
    loaded = load_warehouse(warehouse_block, bucket, curated.tables, duckdb_path)
    seconds["load"] = time.perf_counter() - started

    started = time.perf_counter()
    # On embedded defaults the dashboard is also written next to the warehouse, to open locally.
    dashboard = analyze_and_publish(warehouse_block, bucket, day, duckdb_path,
                                    None if bucket_block else root / "dashboard")
    seconds["analyze+publish"] = time.perf_counter() - started

    warehouse = warehouse_block or f"DuckDB file {duckdb_path.resolve()}"
    summary = build_summary(day, source, bucket, warehouse, landed, curated, loaded, seconds)
    summary.extra["dashboard"] = dashboard
    publish_summary(bucket, summary)
    return summary


@flow(name="x-daily", flow_run_name=daily_run_name, log_prints=True, persist_result=False)
def daily(
    day: date | None = None,
    queries: list[str] = DEFAULT_QUERIES,
    accounts: list[str] | None = None,
    source: SourceName = "sample",
    bucket_block: str | None = None,
    warehouse_block: str | None = None,
    x_token_block: str | None = None,
    x_lookback_hours: float = 72,
    x_api_base_url: str | None = None,
    sample_tweets: int = 400,
    rows_per_file: int = ROWS_PER_FILE,
    local_root: str = "data",
    max_catchup_days: int = 7,
) -> RunSummary:
    """Process `day`, or, by default, every UTC day since the last successful run up to today.

    Catch-up reads the run summaries in the bucket (tasks/catchup.py) and stops at the first failing
    day, so the next run starts again from there; it covers at most `max_catchup_days` days (X recent
    search reaches back 7 days), older misses are logged for the backfill deployment. Returns the
    summary of the last day processed; every day's summary is in the bucket and the Prefect UI.
    Block names select production edges: `bucket_block` (`s3-bucket/<name>`), `warehouse_block`
    (`x-pipeline-warehouse` block) and `x_token_block` (a Secret). Unset, the run uses embedded defaults
    under `local_root`. With `source="x_api"`, `accounts` adds user timelines to the searches,
    `x_lookback_hours` bounds a query's first run and `x_api_base_url` sends requests to another host.
    """
    if day is not None:
        days = [day]
    else:
        bucket = load_bucket(bucket_block, Path(local_root) / "lake")
        plan = days_to_process(bucket, utc_today(), max_catchup_days)
        if plan.skipped:
            get_run_logger().warning(
                "%d missed days before %s are beyond max_catchup_days=%d: run them with `day` (%s..%s)",
                len(plan.skipped), plan.days[0], max_catchup_days, plan.skipped[0], plan.skipped[-1],
            )
        days = plan.days
        print(f"last successful day: {plan.last_success or 'none on record'}; processing {', '.join(map(str, days))}")
    for each in days:
        summary = process_day(
            day=each,
            queries=queries,
            accounts=accounts,
            source=source,
            bucket_block=bucket_block,
            warehouse_block=warehouse_block,
            x_token_block=x_token_block,
            x_lookback_hours=x_lookback_hours,
            x_api_base_url=x_api_base_url,
            sample_tweets=sample_tweets,
            rows_per_file=rows_per_file,
            local_root=local_root,
        )
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m flows.daily",
        description="Run the daily X pipeline once. With no options: today's UTC day on embedded defaults.",
    )
    p.add_argument("--day", type=date.fromisoformat, default=None, help="UTC day to process, YYYY-MM-DD (default: catch up to today)")
    p.add_argument("--query", dest="queries", action="append", default=None,
                   help=f"search query; repeat for several (default: {DEFAULT_QUERIES})")
    p.add_argument("--account", dest="accounts", action="append", default=[],
                   help="X username whose timeline to fetch (x_api); repeat for several")
    p.add_argument("--source", choices=["sample", "x_api", "replay"], default="sample",
                   help="sample: bundled pages; x_api: X API v2; replay: re-run from landed raw pages")
    p.add_argument("--bucket-block", default=None, help="bucket block, e.g. s3-bucket/x-lake (default: local folder)")
    p.add_argument("--warehouse-block", default=None, help="x-pipeline-warehouse block name (default: DuckDB file)")
    p.add_argument("--x-token-block", default=None, help="Secret block with the X bearer token (or X_BEARER_TOKEN)")
    p.add_argument("--x-lookback-hours", type=float, default=72,
                   help="x_api: how far back a query's first run reaches (under 168, recent search's window)")
    p.add_argument("--x-api-base-url", default=None,
                   help="x_api: send requests to this host instead of https://api.twitter.com (a proxy)")
    p.add_argument("--sample-tweets", type=int, default=400, help="tweets per query from the sample source")
    p.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE, help="rows per curated part file")
    p.add_argument("--local-root", default="data", help="folder for the embedded bucket and warehouse")
    return p.parse_args(argv)


def send_prefect_queues(timeout_seconds: float = 10) -> None:
    """Send the run's queued logs and events to the Prefect API now rather than at interpreter exit, so
    that Prefect's shutdown messages ("Still processing items ...") come before the CLI's own last lines.
    (Prefect's test harness drains the same two workers.)"""
    APILogWorker.drain_all(timeout=timeout_seconds)
    EventsWorker.drain_all(timeout=timeout_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = daily(
            day=args.day,
            queries=args.queries or DEFAULT_QUERIES,
            accounts=args.accounts,
            source=args.source,
            bucket_block=args.bucket_block,
            warehouse_block=args.warehouse_block,
            x_token_block=args.x_token_block,
            x_lookback_hours=args.x_lookback_hours,
            x_api_base_url=args.x_api_base_url,
            sample_tweets=args.sample_tweets,
            rows_per_file=args.rows_per_file,
            local_root=args.local_root,
        )
    finally:
        send_prefect_queues()
    print(f"\nDay {summary.day}: {summary.tweets_fetched} tweets in {summary.pages} pages")
    print(f"  data (bucket):  {summary.bucket}")
    print(f"  warehouse:      {summary.warehouse}")
    print(f"  dashboard:      {summary.extra['dashboard']}")
    print(f"  run summary:    {summary.summary_key} in the bucket, and the Prefect artifact "
          f"x-pipeline-run-{summary.day}")
    for name, t in summary.tables.items():
        print(f"  {name:<20} {t['rows']:>8} rows today  {t['new']:>7} new  {t['updated']:>7} updated  {t['total']:>8} total")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BucketError, PermanentSourceError, WarehouseError, FileNotFoundError) as exc:
        # A setting or input the user has to fix: say which, without a stack trace.
        sys.exit(f"error: {exc}")
