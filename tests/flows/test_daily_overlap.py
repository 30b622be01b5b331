"""Two runs of the same day at once (a scheduled run overlapping a manual run or a backfill), on the local
folder and on moto's S3 server: no run may lose, mix or silently drop the other's data."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import pytest
from prefect.settings import PREFECT_API_URL
from prefect_aws import S3Bucket

import flows.daily
import tasks.runs.lease
from flows.daily import process_day
from flows.settings import PipelineSettings
from tasks.lake import open_bucket
from tasks.lake.bucket import Bucket
from tasks.lake.curate import curated_prefix, manifest_key
from tasks.lake.land import landed_raw_keys
from tasks.runs.lease import DayBusyError, DayLease
from tasks.runs.summary import RunSummary

ROOT = Path(__file__).resolve().parents[2]

FIRST = {"queries": ["#DataEng"], "sample_tweets": 60}
SECOND = {"queries": ["prefect polars"], "sample_tweets": 90}


def _day_data(bucket: Bucket, root: Path, day: date) -> dict[str, Any]:
    """What a day left behind: raw keys, the tweets the curated manifest lists, the warehouse's tweets."""
    parts = sorted(k for k in bucket.list(curated_prefix("tweets", day)) if k.endswith(".parquet"))
    manifest = orjson.loads(bucket.read(manifest_key("tweets", day, "parquet")))
    assert [e["url"] for e in manifest["entries"]] == [bucket.url(k) for k in parts]  # no stray or missing part
    curated = pl.concat([pl.read_parquet(io.BytesIO(bucket.read(k))) for k in parts])
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        warehouse = sorted(r[0] for r in con.execute('SELECT "tweet_id" FROM "tweets"').fetchall())
    finally:
        con.close()
    return {"raw": landed_raw_keys(bucket, day), "curated": sorted(curated["tweet_id"]), "warehouse": warehouse}


def _clean_runs(root: Path, day: date, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The day after `runs`, one after the other, on a fresh local folder: what an overlap must equal."""
    for run in runs:
        process_day(day=day, settings=PipelineSettings(local_root=str(root), **run))
    return _day_data(open_bucket(None, root), root, day)


def _overlapping(monkeypatch: pytest.MonkeyPatch, first: Callable[[], RunSummary],
                 second: Callable[[], RunSummary]) -> dict[str, RunSummary | BaseException]:
    """Runs `first` in a thread and, once it has landed its pages, `second` in another thread while
    `first` waits before curating; `first` goes on when `second` has ended or waits for the day's lease."""
    first_landed, second_ended = threading.Event(), threading.Event()
    curate_day, lease_sleep = flows.daily.curate_day, tasks.runs.lease.sleep
    outcomes: dict[str, RunSummary | BaseException] = {}

    def paused_curate(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first":
            first_landed.set()
            assert second_ended.wait(120), "the second run did not end"
        return curate_day(*args, **kwargs)

    def waiting_for_the_lease(seconds: float) -> None:
        second_ended.set()
        lease_sleep(min(seconds, 0.05))

    def run(name: str, fn: Callable[[], RunSummary], ended: threading.Event | None) -> None:
        try:
            outcomes[name] = fn()
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            outcomes[name] = exc
        finally:
            if ended is not None:
                ended.set()

    monkeypatch.setattr(flows.daily, "curate_day", paused_curate)
    monkeypatch.setattr(tasks.runs.lease, "sleep", waiting_for_the_lease)
    threads = [threading.Thread(target=run, args=("first", first, None), name="first")]
    threads[0].start()
    assert first_landed.wait(120), "the first run did not land"
    threads.append(threading.Thread(target=run, args=("second", second, second_ended), name="second"))
    threads[1].start()
    for thread in threads:
        thread.join(180)
    return outcomes


@pytest.mark.parametrize("wait", [0, 600], ids=["second-fails", "second-waits"])
@pytest.mark.parametrize("store", ["local", "s3"])
def test_two_runs_of_the_same_day_at_once_lose_no_tweets(
    prefect_server: None, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    day: date, store: str, wait: float,
) -> None:
    root = tmp_path / "overlap"
    block = None
    if store == "s3":
        request.getfixturevalue("s3_bucket_block").save("overlap-lake", overwrite=True)
        block = "s3-bucket/overlap-lake"

    def first() -> RunSummary:
        return process_day(day=day, settings=PipelineSettings(bucket=block, local_root=str(root),
                                                              allow_sample_data=True, **FIRST))

    def second() -> RunSummary:
        return process_day(day=day, settings=PipelineSettings(bucket=block, local_root=str(root), lease_wait_seconds=wait,
                                                              allow_sample_data=True, **SECOND))

    outcomes = _overlapping(monkeypatch, first, second)

    assert isinstance(outcomes["first"], RunSummary), outcomes["first"]
    if wait:
        assert isinstance(outcomes["second"], RunSummary), outcomes["second"]
    else:
        assert isinstance(outcomes["second"], DayBusyError), outcomes["second"]
        assert str(outcomes["second"]).startswith(f"day {day} is being processed by another run: flow run day-{day}")
        assert "UTC unless renewed); waited 0 s (lease_wait_seconds)" in str(outcomes["second"])
    succeeded = [run for name, run in (("first", FIRST), ("second", SECOND)) if isinstance(outcomes[name], RunSummary)]
    # Every run that ended well has all its tweets in the lake's curated files and the warehouse, and nothing
    # else is there: the same as those runs one after the other.
    expected = _clean_runs(tmp_path / "clean", day, succeeded)
    got = _day_data(open_bucket(S3Bucket.load(block.split("/")[1]) if block else None, root), root, day)
    assert got == expected, {k: f"{len(got[k])} (expected {len(expected[k])})" for k in got}


def test_cli_of_a_day_another_run_holds_fails_with_one_line(prefect_server: None, tmp_path: Path, day: date) -> None:
    holder = DayLease(open_bucket(None, tmp_path), day, owner="flow run day-x (id-1) on host-a pid 7")
    holder.acquire(wait_seconds=0)
    cli = subprocess.run(
        [sys.executable, "-m", "flows.daily", "--day", day.isoformat(), "--local-root", str(tmp_path),
         "--lease-wait-seconds", "0"],
        check=False, env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert cli.returncode == 1
    last_line = cli.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: day {day} is being processed by another run: flow run day-x (id-1) on host-a "
                                "pid 7 holds its lease"), cli.stderr[-2000:]
    assert not (tmp_path / "lake" / "raw").exists()  # nothing landed
    assert holder.release()
