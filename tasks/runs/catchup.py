"""Catch-up: which days a scheduled run processes, from the run summaries kept in the bucket.

A day's `runs/dt=D/summary.json` is written only after the day loaded, and removed first by any run of
the day (`invalidate_summary`), so it is the record of success, and it lives next to the data: a worker
on another machine reads the same record. A run with no explicit day processes every day after the last
successful one up to today, so a missed or failed run leaves no hole, bounded so that a long outage does
not turn one run into an unbounded backfill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.lake.bucket import Bucket

_SUMMARY_KEY = re.compile(r"^runs/dt=(\d{4}-\d{2}-\d{2})/summary\.json$")


@dataclass(frozen=True)
class CatchUp:
    days: list[date]
    last_success: date | None
    skipped: list[date]  # missed days older than the bound: left to runs with an explicit day
    today_done: bool = False  # today already has a record of success (an earlier run today)

    def describe(self) -> str:
        before = f"last successful day before today: {self.last_success or 'none on record'}"
        again = "; today already succeeded once and is processed again for newer posts" if self.today_done else ""
        return f"{before}{again}; processing {', '.join(map(str, self.days))}"


def successful_days(bucket: Bucket) -> list[date]:
    """Days whose run summary is in the bucket, oldest first."""
    return sorted(date.fromisoformat(m[1]) for k in bucket.list("runs/") if (m := _SUMMARY_KEY.match(k)))


def plan_catch_up(done: list[date], today: date, max_catchup_days: int) -> CatchUp:
    """Days after the last success up to `today`, oldest first, at most the last `max_catchup_days`.

    With no success on record (a first run) only `today` is processed: there is nothing to catch up.
    Today is always included: a run earlier today may have seen only part of the day.
    """
    if max_catchup_days < 1:
        raise ValueError(f"max_catchup_days must be at least 1, got {max_catchup_days}")
    last = max((d for d in done if d < today), default=None)
    first = today if last is None else last + timedelta(days=1)
    missed = [first + timedelta(days=n) for n in range((today - first).days + 1)]
    return CatchUp(days=missed[-max_catchup_days:], last_success=last, skipped=missed[:-max_catchup_days],
                   today_done=today in done)


@task(name="days-to-process", cache_policy=NO_CACHE, persist_result=False)
def days_to_process(bucket: Bucket, today: date, max_catchup_days: int) -> CatchUp:
    """Read the record of successful days from the bucket and plan this run's days."""
    return plan_catch_up(successful_days(bucket), today, max_catchup_days)
