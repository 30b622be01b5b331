"""Backfill: re-process a range of days from the raw pages already landed, without calling the API.

Each day is `process_day` with `source="replay"`, a subflow of its own (named `day-YYYY-MM-DD` in the
UI), run in a thread pool of `max_parallel` days. Deployed as `x-backfill/backfill` (prefect.yaml, no
schedule); run it with `prefect deployment run x-backfill/backfill -p start=... -p end=...`.
"""

from __future__ import annotations

from datetime import date, timedelta

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.daily import day_run_tags, process_day
from flows.settings import PipelineSettings, StorageSettings
from tasks.runs.summary import RunSummary


def days_between(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"backfill range is empty: end {end} is before start {start}")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


# A task around the subflow lets a task runner run days side by side; the subflow keeps each day's
# story (and its failure) visible on its own in the UI.
@task(name="replay-day", task_run_name="replay-{day}", cache_policy=NO_CACHE, persist_result=False)
def replay_day(day: date, settings: PipelineSettings) -> RunSummary:
    return process_day(day=day, settings=settings)


@flow(name="x-backfill", flow_run_name="backfill-{start}..{end}", log_prints=True, persist_result=False)
def backfill(
    start: date,
    end: date,
    max_parallel: int = 4,
    storage: StorageSettings = StorageSettings(),  # noqa: B008
) -> dict[str, int]:
    """Replay every day from `start` to `end` (inclusive) from landed raw pages; returns tweets per day.

    Days run in parallel, at most `max_parallel` at a time. Every day is attempted even when another
    fails; the flow then fails naming the failed days, which a re-run (idempotent) retries.

    Args:
        start: The first UTC day to replay.
        end: The last UTC day to replay (inclusive).
        max_parallel: The most days replayed at the same time (at least 1).
        storage: The bucket holding the landed pages and the warehouse to load (the daily deployment's).
    """
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
    days = days_between(start, end)
    settings = PipelineSettings.for_replay(storage)
    logger = get_run_logger()
    logger.info("replaying %d days, %s to %s, %d at a time", len(days), start, end, max_parallel)
    with day_run_tags(), ThreadPoolTaskRunner(max_workers=max_parallel) as runner:
        futures = {day: runner.submit(replay_day, {"day": day, "settings": settings}) for day in days}
        wait(list(futures.values()))
    failed = [day for day, future in futures.items() if not future.state.is_completed()]
    if failed:
        raise RuntimeError(f"backfill failed for {len(failed)} of {len(days)} days: {', '.join(map(str, failed))}")
    tweets = {str(day): futures[day].result().tweets_fetched for day in days}
    print(f"backfilled {len(days)} days: {tweets}")
    return tweets
