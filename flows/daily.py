"""The daily X pipeline: fetch -> land raw -> normalize -> curated files -> warehouse -> summary.

Run it locally with `python -m flows.daily` (embedded defaults: bundled sample pages, a local folder
as the bucket, a DuckDB file as the warehouse) or deploy it with `prefect deploy` (see prefect.yaml).
`daily` decides which days to process; `process_day` is one day's story, a subflow per day.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks.analyze import AnalysisError
from tasks.bucket import load_bucket
from tasks.catchup import days_to_process
from tasks.completeness import require_complete_landing
from tasks.curate import ROWS_PER_FILE, curate_day, part_count
from tasks.dashboard import analyze_and_publish
from tasks.land import LandedQuery, fetch_and_land, landed_error_keys, landed_raw_keys
from tasks.lease import DEFAULT_WAIT_SECONDS, day_lease
from tasks.source import PageSource, SampleSource
from tasks.summary import (
    RunSummary,
    build_summary,
    incomplete_day_error,
    invalidate_summary,
    publish_summary,
)
from tasks.warehouse import DEFAULT_DUCKDB_PATH, load_warehouse
from tasks.x_api import XApiSource, load_bearer_token, timeline_target

DEFAULT_QUERIES = ["#DataEng", "prefect polars", "(redshift OR s3) lang:en"]
SourceName = Literal["sample", "x_api", "replay"]
FIRST_DAY = date(2006, 3, 21)  # X's first day: nothing to fetch before it
MAX_LOOKBACK_HOURS = 168  # X recent search's window


class InvalidParameter(ValueError):
    """A parameter the user has to correct; the message names the value and the accepted range."""


def utc_today() -> date:
    return datetime.now(UTC).date()


def check_day(day: date) -> date:
    """A day that has begun, from X's first day on: a mistyped future day must not replace the dashboard."""
    today = utc_today()
    if day > today:
        raise InvalidParameter(f"day {day} is after today ({today} UTC)")
    if day < FIRST_DAY:
        raise InvalidParameter(f"day {day} is before {FIRST_DAY}, X's first day")
    return day


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
    lease_wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> RunSummary:
    """One UTC day: fetch and land raw pages, normalize and curate, load the warehouse, analyze and
    publish the dashboard, summarize. One run of a day at a time: the day's lease in the bucket is held
    throughout; a run that finds it held waits up to `lease_wait_seconds`, then fails (tasks/lease.py).

    The day's record of success is removed first and written last, so a run that fails (or a day with an
    unreadable raw file, which is curated without it and fails at the end naming it) is not marked done."""
    check_day(day)
    logger = get_run_logger()
    root = Path(local_root)
    seconds: dict[str, float] = {}
    bucket = load_bucket(bucket_block, root / "lake")
    logger.info("processing %s from %s into %s", day, source, bucket.describe())

    # A run that lost its lease withdraws the day's record of success: it may have rewritten part of the day.
    with day_lease(bucket, day, lease_wait_seconds, on_lost=lambda: invalidate_summary(bucket, day)) as lease:
        invalidate_summary(bucket, day)  # under the lease: another run's record is never removed mid-run
        started = time.perf_counter()
        page_source = open_source(source, sample_tweets, x_token_block, x_lookback_hours, x_api_base_url)
        landed: list[LandedQuery] = []
        if page_source is not None:
            targets = [*queries, *(timeline_target(a) for a in accounts or ())]
            landed = [fetch_and_land(page_source, bucket, t, day) for t in targets]
        # Curate from everything landed for the day (replay: from any source), not only this run's pages.
        source_name = None if page_source is None else page_source.name
        raw_keys = landed_raw_keys(bucket, day, source_name)
        if page_source is None and not raw_keys:
            raise FileNotFoundError(f"nothing to replay: no raw pages for {day} in {bucket.describe()}")
        # A day with a query landed only in part is not loaded and gets no run summary (tasks/completeness.py).
        require_complete_landing(bucket, day, source_name, [q.query for q in landed])
        seconds["fetch+land"] = time.perf_counter() - started

        lease.confirm()  # before each stage that rewrites the day: a run that lost its lease stops here
        started = time.perf_counter()
        # Raw files hold up to 50 pages of up to 100 tweets: size the parts before counting rows exactly.
        expected_rows = sum(q.tweets for q in landed) or 50 * 100 * len(raw_keys)
        curated = curate_day(bucket, day, raw_keys, parts=part_count(expected_rows, rows_per_file))
        seconds["normalize+curate"] = time.perf_counter() - started

        lease.confirm()
        started = time.perf_counter()
        duckdb_path = root / DEFAULT_DUCKDB_PATH.name
        loaded = load_warehouse(warehouse_block, bucket, curated.tables, duckdb_path)
        seconds["load"] = time.perf_counter() - started

        started = time.perf_counter()
        # The load is committed: an analysis failure is recorded in the summary (the day is loaded, so
        # catch-up moves on) and fails the `daily` run at its end. Re-run the day to analyze it again.
        # On embedded defaults the dashboard is also written next to the warehouse, to open locally.
        analyzed = analyze_and_publish(warehouse_block, bucket, day, duckdb_path,
                                       None if bucket_block else root / "dashboard", return_state=True)
        if analyzed.is_completed():
            dashboard, analysis = analyzed.result(), {"status": "ok"}
        else:
            logger.error("analysis of %s failed after its load committed: %s", day, analyzed.message)
            dashboard = "not published: analysis failed"
            analysis = {"status": "failed", "reason": str(analyzed.message)}
        seconds["analyze+publish"] = time.perf_counter() - started

        warehouse = warehouse_block or f"DuckDB file {duckdb_path.resolve()}"
        error_keys = landed_error_keys(bucket, day, source_name)
        summary = build_summary(day, source, bucket, warehouse, landed, curated, error_keys, loaded, seconds)
        summary.extra["dashboard"] = dashboard
        summary.analysis = analysis
        lease.confirm()
        publish_summary(bucket, summary)
        if summary.unreadable_files:
            raise incomplete_day_error(summary)  # the summary above is not the day's record of success
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
    lease_wait_seconds: float = DEFAULT_WAIT_SECONDS,
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
    A day another run is processing is waited for up to `lease_wait_seconds` (README "Reliability").
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
    not_analyzed = []
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
            lease_wait_seconds=lease_wait_seconds,
        )
        if summary.analysis.get("status") == "failed":
            not_analyzed.append(f"{each} ({summary.analysis['reason']})")
    if not_analyzed:
        raise AnalysisError(f"analysis failed for {', '.join(not_analyzed)}; the data of these days is loaded "
                            "and recorded in their run summaries: re-run each day with `day` to analyze it")
    return summary


if __name__ == "__main__":
    from flows.cli import main  # the command line lives apart from the story

    sys.exit(main())
