"""Steps of a day's story (flows/daily.py) that take more than one call: landing the day's pages,
analyzing with its failure recorded, and timing each stage for the run summary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from prefect import get_run_logger

from flows.edges import Edges
from flows.settings import PipelineSettings
from tasks.analytics.dashboard import analyze_and_publish
from tasks.lake.land import (
    MAX_TWEETS_PER_PAGE,
    PAGES_PER_FILE,
    LandedQuery,
    fetch_and_land,
    landed_error_keys,
    landed_raw_keys,
)
from tasks.runs.completeness import require_complete_landing
from tasks.sources import timeline_target


@dataclass
class Stopwatch:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = time.perf_counter() - started


@dataclass(frozen=True)
class DayPages:
    landed: list[LandedQuery]  # this run's landings (none on replay)
    raw_keys: list[str]  # every raw file of the day in the bucket, from any run
    error_keys: list[str]

    @property
    def expected_rows(self) -> int:
        """Tweets landed, else the most the raw files can hold: sizes the curated parts before counting."""
        return sum(q.tweets for q in self.landed) or PAGES_PER_FILE * MAX_TWEETS_PER_PAGE * len(self.raw_keys)


def land_day(edges: Edges, settings: PipelineSettings, day: date) -> DayPages:
    """Fetch and land every query and account of the day; then check that the day is landed completely.

    The day is curated from everything landed for it (replay: from any source), not only this run's pages;
    a day with a query landed only in part is not loaded (tasks/runs/completeness.py)."""
    landed: list[LandedQuery] = []
    if edges.source is not None:
        targets = [*settings.queries, *(timeline_target(a) for a in settings.accounts)]
        landed = [fetch_and_land(edges.source, edges.bucket, t, day) for t in targets]
    source_name = None if edges.source is None else edges.source.name
    raw_keys = landed_raw_keys(edges.bucket, day, source_name)
    if edges.source is None and not raw_keys:
        raise FileNotFoundError(f"nothing to replay: no raw pages for {day} in {edges.bucket.describe()}")
    require_complete_landing(edges.bucket, day, source_name, [q.query for q in landed])
    return DayPages(landed, raw_keys, landed_error_keys(edges.bucket, day, source_name))


def analyze_day_or_record(edges: Edges, day: date) -> tuple[str, dict[str, str]]:
    """Analyze and publish the loaded day: (where the dashboard is, the analysis status for the summary).

    The load is committed: an analysis failure is recorded (the day is loaded, so catch-up moves on) and
    fails the `daily` run at its end. Re-run the day to analyze it again."""
    analyzed = analyze_and_publish(edges.warehouse, edges.bucket, day, edges.dashboard_dir, return_state=True)
    if analyzed.is_completed():
        location, metrics = analyzed.result()
        return location, {"status": "ok", "metrics": metrics.describe()}
    get_run_logger().error("analysis of %s failed after its load committed: %s", day, analyzed.message)
    return "not published: analysis failed", {"status": "failed", "reason": str(analyzed.message)}
