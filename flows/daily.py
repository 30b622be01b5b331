"""The daily X pipeline: fetch -> land raw -> normalize -> curated files -> warehouse -> dashboard -> summary.

Run it locally with `python -m flows.daily` (embedded defaults) or deploy it (prefect.yaml). `daily`
decides which days to process; `process_day` is one day's story, a subflow per day. Parameters are one
typed model (flows/settings.py); the edges they name are resolved once per day (flows/edges.py).
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from datetime import date

from prefect import flow, get_run_logger, tags
from prefect.runtime import flow_run

from flows.edges import open_edges, open_storage
from flows.settings import PipelineSettings, check_day, utc_today
from flows.stages import Stopwatch, analyze_day_or_record, land_day
from tasks.analytics.analyze import AnalysisError
from tasks.lake.curate import curate_day, part_count
from tasks.runs.catchup import days_to_process
from tasks.runs.lease import day_lease
from tasks.runs.summary import (
    RunSummary,
    build_summary,
    incomplete_day_error,
    invalidate_summary,
    publish_summary,
)
from tasks.warehouse import load_warehouse

TAGS = ("x-pipeline",)


def day_run_tags() -> AbstractContextManager[set[str]]:
    """Tags of the day runs a flow starts: the pipeline's and the starting run's own (a deployment's), so a
    filter on them shows the runs that do the work."""
    return tags(*TAGS, *(flow_run.tags or ()))


def daily_run_name() -> str:
    """`daily-YYYY-MM-DD`: the explicit day, else the UTC date the run starts (never `daily-None`)."""
    return f"daily-{flow_run.parameters.get('day') or utc_today()}"


@flow(name="x-day", flow_run_name="day-{day}", persist_result=False)
def process_day(day: date, settings: PipelineSettings = PipelineSettings()) -> RunSummary:  # noqa: B008
    """One UTC day: land its pages, curate them, load the warehouse, analyze and publish, summarize.

    One run of a day at a time: the day's lease is held throughout, and confirmed before each stage that
    rewrites the day (tasks/runs/lease.py). The day's record of success is removed first and written
    last, so a run that fails, or a day with an unreadable raw file, is not marked done.

    Args:
        day: The UTC day to process.
        settings: What to fetch and where to keep it.
    """
    check_day(day)
    edges, clock = open_edges(settings), Stopwatch()
    get_run_logger().info("processing %s from %s into %s and %s", day, settings.source, edges.bucket.describe(),
                          edges.warehouse.describe())
    with day_lease(edges.bucket, day, settings.lease_wait_seconds,
                   on_lost=lambda: invalidate_summary(edges.bucket, day)) as lease:
        invalidate_summary(edges.bucket, day)  # under the lease: another run's record is never removed mid-run
        with clock("fetch+land"):
            pages = land_day(edges, settings, day)
        lease.confirm()
        with clock("normalize+curate"):
            parts = part_count(pages.expected_rows, settings.rows_per_file)
            curated = curate_day(edges.bucket, day, pages.raw_keys, parts=parts)
        lease.confirm()
        with clock("load"):
            loaded = load_warehouse(edges.warehouse, edges.bucket, curated.tables)
        with clock("analyze+publish"):
            dashboard, analysis = analyze_day_or_record(edges, day)
        summary = build_summary(day, settings.source, edges.bucket, edges.warehouse.describe(), pages.landed,
                                curated, pages.error_keys, loaded, clock.seconds)
        summary.extra["dashboard"], summary.analysis = dashboard, analysis
        lease.confirm()
        publish_summary(edges.bucket, summary)
        if summary.unreadable_files:
            raise incomplete_day_error(summary)  # the summary above is not the day's record of success
        return summary


@flow(name="x-daily", flow_run_name=daily_run_name, log_prints=True, persist_result=False)
def daily(
    day: date | None = None,
    settings: PipelineSettings = PipelineSettings(),  # noqa: B008
    max_catchup_days: int = 7,
) -> RunSummary:
    """Process `day`, or every UTC day since the last successful run up to today.

    Args:
        day: The UTC day to process. Empty: catch up, from the day after the last successful one (read
            from the run records in the bucket) to today.
        settings: What to fetch and where to keep it: source, queries, blocks.
        max_catchup_days: The most days one catch-up run processes (X recent search reaches back 7 days);
            older missed days are logged, for the backfill deployment.
    """
    days = [check_day(day)] if day is not None else plan_days(settings, max_catchup_days)
    not_analyzed = []
    with day_run_tags():
        for each in days:
            summary = process_day(day=each, settings=settings)
            if summary.analysis.get("status") == "failed":
                not_analyzed.append(f"{each} ({summary.analysis['reason']})")
    if not_analyzed:
        raise AnalysisError(f"analysis failed for {', '.join(not_analyzed)}; the data of these days is loaded "
                            "and recorded in their run summaries: re-run each day with `day` to analyze it")
    return summary


def plan_days(settings: PipelineSettings, max_catchup_days: int) -> list[date]:
    bucket, _ = open_storage(settings)
    plan = days_to_process(bucket, utc_today(), max_catchup_days)
    if plan.skipped:
        get_run_logger().warning(
            "%d missed days before %s are beyond max_catchup_days=%d: run them with `day` (%s..%s)",
            len(plan.skipped), plan.days[0], max_catchup_days, plan.skipped[0], plan.skipped[-1])
    print(plan.describe())
    return plan.days


if __name__ == "__main__":
    from flows.cli import main  # the command line lives apart from the story

    sys.exit(main(daily))
