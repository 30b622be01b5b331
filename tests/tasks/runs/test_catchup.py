from datetime import date, timedelta

import pytest

from tasks.lake.bucket import LocalBucket
from tasks.runs.catchup import days_to_process, plan_catch_up, successful_days
from tasks.runs.summary import summary_key

TODAY = date(2026, 11, 24)


def _days_ago(*ns: int) -> list[date]:
    return [TODAY - timedelta(days=n) for n in ns]


def _record_success(bucket: LocalBucket, *days: date) -> None:
    for day in days:
        bucket.write(summary_key(day), b"{}")


def test_a_first_run_processes_only_today(local_bucket: LocalBucket) -> None:
    plan = days_to_process.fn(local_bucket, TODAY, 7)
    assert plan.days == [TODAY] and plan.last_success is None and plan.skipped == []


def test_catches_up_every_day_since_the_last_success_oldest_first(local_bucket: LocalBucket) -> None:
    _record_success(local_bucket, *_days_ago(9, 3))
    local_bucket.write("runs/dt=2026-11-23/notes.txt", b"not a summary")  # only summaries count
    plan = days_to_process.fn(local_bucket, TODAY, 7)
    assert plan.last_success == TODAY - timedelta(days=3)
    assert plan.days == _days_ago(2, 1, 0)
    assert successful_days(local_bucket) == _days_ago(9, 3)


def test_catch_up_is_bounded_and_reports_the_older_misses() -> None:
    plan = plan_catch_up(_days_ago(10), TODAY, max_catchup_days=3)
    assert plan.days == _days_ago(2, 1, 0)
    assert plan.skipped == _days_ago(9, 8, 7, 6, 5, 4, 3)


def test_today_is_processed_again_and_an_earlier_hole_is_not_filled_past_a_later_success() -> None:
    assert plan_catch_up(_days_ago(1, 0), TODAY, 7).days == [TODAY]
    # The record is "the last successful day": a hole before it is the backfill's job.
    assert plan_catch_up(_days_ago(4, 2), TODAY, 7).days == _days_ago(1, 0)


def test_max_catchup_days_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_catch_up([], TODAY, 0)


def test_a_run_after_todays_success_says_today_is_processed_again() -> None:
    plan = plan_catch_up(_days_ago(1, 0), TODAY, max_catchup_days=7)
    assert plan.days == [TODAY] and plan.last_success == TODAY - timedelta(days=1) and plan.today_done
    assert plan.describe() == ("last successful day before today: 2026-11-23; today already succeeded once and "
                               "is processed again for newer posts; processing 2026-11-24")
    first = plan_catch_up([], TODAY, max_catchup_days=7)
    assert first.describe() == "last successful day before today: none on record; processing 2026-11-24"
