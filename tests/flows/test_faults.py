"""Fault injection (tracker issue 16): no run, crash or bad value may lose, mix or silently drop data.

Each case runs the real flow under one fault, then checks the warehouse against the one reference,
`clean_replay`: the same raw pages copied into a fresh bucket and replayed by a run that nothing disturbs.
Every case also accounts for every tweet of the raw pages: it is in the warehouse, or counted by reason in
the run summary's `skipped` (`assert_every_tweet_accounted`).

A real kill needs a real process: `python -m flows.daily`, started through `python -m tests.faults BOUNDARY`,
which makes the process stop itself (SIGSTOP) at that stage boundary. The test waits for the stop, then
SIGKILLs it: the kill lands exactly at the boundary, with no race against a poll and no hook in production
code.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from flows.daily import daily
from flows.settings import PipelineSettings, utc_today
from tasks.lake import open_bucket
from tasks.lake.bucket import Bucket
from tasks.lake.curate import SPOOL_PREFIX
from tasks.lake.land import (
    LANDING_RECORD,
    UNFINISHED,
    FetchedPage,
    LandedQuery,
    land_pages,
    landed_raw_keys,
    write_landing,
)
from tasks.runs.lease import DayBusyError, LeaseRecord, lease_key, utc_now
from tasks.runs.summary import IncompleteDayError, incomplete_key, summary_key
from tasks.schema import METRIC_TABLES, TABLES, quote_ident
from tasks.sources.sample import SampleSource
from tests.faults import BOUNDARIES

Tables = dict[str, list[tuple[Any, ...]]]
WAREHOUSE = "warehouse.duckdb"
COUNT_OUT_OF_RANGE = "out of range (0 <= n <= 10^12) -> null"
ROOT = Path(__file__).resolve().parents[2]
BAD_TEXT = "tweet text not valid UTF-8 (invalid bytes or a lone surrogate)"
GENEROUS = 300.0  # seconds: bounds of waits that end in seconds on a quiet machine; never asserted on


# -- reading what a run left --------------------------------------------------------------------------
def lake_of(root: Path) -> Bucket:
    return open_bucket(None, root)


def warehouse_tables(root: Path) -> Tables:
    """Every table of the DuckDB warehouse under `root` (pipeline tables, then the dashboard's metrics),
    rows ordered by primary key: two warehouses are equal when these are."""
    con = duckdb.connect(str(root / WAREHOUSE), read_only=True)
    try:
        return {
            name: con.execute(f"SELECT * FROM {quote_ident(name)} "
                              f"ORDER BY {', '.join(quote_ident(k) for k in table.primary_key)}").fetchall()
            for name, table in {**TABLES, **METRIC_TABLES}.items()
        }
    finally:
        con.close()


def run_record(lake: Bucket, day: date) -> dict[str, Any]:
    """The day's run summary as catch-up sees it: `summary.json` (success) or `incomplete.json`."""
    for key in (summary_key(day), incomplete_key(day)):
        if key in lake.list(key):
            return orjson.loads(lake.read(key))
    raise AssertionError(f"no run summary for {day}")


def has_success_record(lake: Bucket, day: date) -> bool:
    return summary_key(day) in lake.list(summary_key(day))


def raw_tweet_ids(lake: Bucket, day: date, leave_out: Collection[str] = ()) -> list[object]:
    """The id of every tweet occurrence on the day's raw pages (a str, or whatever the page sent), read with
    the standard library, which reads what the pipeline's fast reader refuses (invalid UTF-8 through
    `surrogateescape`). Files in `leave_out` (unreadable) are not read."""
    ids: list[object] = []
    for key in landed_raw_keys(lake, day):
        if key in leave_out:
            continue
        for line in gzip.decompress(lake.read(key)).splitlines():
            if line.strip():
                body = json.loads(line.decode("utf-8", "surrogateescape"))["body"]
                ids += [tweet.get("id") for tweet in body.get("data") or ()]
    return ids


def warehouse_tweet_ids(root: Path) -> set[str]:
    return {str(row[0]) for row in warehouse_tables(root)["tweets"]}


def assert_every_tweet_accounted(root: Path, day: date, leave_out: Collection[str] = ()) -> dict[str, Any]:
    """Every tweet on the day's readable raw pages is in the warehouse or counted by reason in the run
    summary's `skipped`, and the warehouse holds no tweet the pages do not; returns the summary."""
    lake, record = lake_of(root), run_record(lake_of(root), day)
    seen = raw_tweet_ids(lake, day, leave_out)
    loaded = warehouse_tweet_ids(root)
    left_out = [t for t in seen if not (isinstance(t, str) and t in loaded)]
    dropping = {reason: n for reason, n in record["skipped"].items()
                if reason.startswith("tweet") and "row kept" not in reason}
    assert record["tweets_fetched"] == len(seen)
    assert len(left_out) == sum(dropping.values()), (left_out, record["skipped"])
    assert loaded == {t for t in seen if isinstance(t, str)} - {t for t in left_out if isinstance(t, str)}
    return record


# -- the reference: a clean run of the same raw pages --------------------------------------------------
@dataclass(frozen=True)
class Replay:
    tables: Tables
    summary: dict[str, Any]


_REPLAYS: dict[str, Replay] = {}  # by the raw pages' digest: a replay is a function of its raw pages


def clean_replay(lake: Bucket, day: date, workdir: Path, leave_out: Collection[str] = ()) -> Replay:
    """What a clean run of the day's raw pages gives: the day's `raw/` keys (pages and landing records)
    copied into a fresh local bucket and replayed by `daily(source="replay")`.

    `leave_out` names raw files a fault made unreadable: they are not copied, and the landing records
    that list them list only the rest, as if the landing had written the readable files alone."""
    files = {k: lake.read(k) for k in lake.list("raw/") if f"/dt={day.isoformat()}/" in k and k not in leave_out}
    for key in [k for k in files if k.endswith(LANDING_RECORD) and leave_out]:
        record = orjson.loads(files[key])
        record["keys"] = [k for k in record["keys"] if k not in leave_out]
        files[key] = orjson.dumps(record, option=orjson.OPT_INDENT_2)
    digest = hashlib.sha256(b"".join(k.encode() + b"\0" + hashlib.sha256(v).digest()
                                     for k, v in sorted(files.items()))).hexdigest()
    if digest not in _REPLAYS:
        root = workdir / f"clean-replay-{digest[:12]}"
        fresh = lake_of(root)
        for key, data in files.items():
            fresh.write(key, data)
        daily(day=day, settings=PipelineSettings(source="replay", local_root=str(root)))
        _REPLAYS[digest] = Replay(warehouse_tables(root), run_record(fresh, day))
    return _REPLAYS[digest]


def assert_equals_clean_replay(root: Path, day: date, workdir: Path, leave_out: Collection[str] = ()) -> Replay:
    """The warehouse under `root` equals, table by table and row by row, a clean replay of the day's raw pages,
    and the day's run summary counts what the replay's counts (tweets, skipped and cleaned values)."""
    reference = clean_replay(lake_of(root), day, workdir, leave_out)
    got = warehouse_tables(root)
    differ = {name: f"{len(rows)} rows; clean replay: {len(reference.tables[name])}"
              for name, rows in got.items() if rows != reference.tables[name]}
    assert not differ, differ
    assert reference.tables["tweets"], "a vacuous comparison: the clean replay loaded no tweet"
    record = run_record(lake_of(root), day)
    for field in ("tweets_fetched", "api_errors", "skipped", "cleaned"):
        assert record[field] == reference.summary[field], field
    assert {t: s["rows"] for t, s in record["tables"].items()} == {
        t: s["rows"] for t, s in reference.summary["tables"].items()}
    return reference


# -- a real process, stopped at a stage boundary -------------------------------------------------------
def prefect_env() -> dict[str, str]:
    """The child's environment: this session's isolated Prefect home and its test server."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


@dataclass
class StoppedRun:
    """A child run of the daily CLI, stopped by itself at a boundary."""

    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(GENEROUS)

    def resume(self) -> int:
        self.proc.send_signal(signal.SIGCONT)
        return self.proc.wait(GENEROUS)


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_child_left() -> Iterator[None]:
    """A case that fails half-way leaves no stopped child behind (it would hold its day's lease)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(GENEROUS)


def start_stopped(boundary: str, options: list[str], log: Path) -> StoppedRun:
    """Start `python -m flows.daily options` in a process (through tests/faults.py, which adds the stop) and
    return once it has stopped itself at `boundary`."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.faults", boundary, *options],
                                cwd=ROOT, env=prefect_env(), stdout=out, stderr=subprocess.STDOUT)
    _STARTED.append(proc)
    deadline = time.monotonic() + GENEROUS
    while True:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return StoppedRun(proc, log)
        if pid:  # ended (and reaped here) before the boundary
            proc.returncode = os.waitstatus_to_exitcode(status)
            pytest.fail(f"the run ended with {proc.returncode} before reaching {boundary}:\n{tail(log)}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the run did not reach {boundary} within {GENEROUS:g} s:\n{tail(log)}")
        time.sleep(0.05)


def sample_ids(query: str, tweets: int, day: date) -> set[str]:
    """The ids of the tweets the sample source serves for `query` on `day`."""
    return {t["id"] for p in SampleSource(tweets).pages(query, day) for t in (p.body or {}).get("data") or ()}


def expire_lease(lake: Bucket, day: date) -> None:
    """What the lease's ten minutes do to a killed run's lease, which nothing renews: it expires."""
    record = LeaseRecord.from_bytes(lake.read(lease_key(day)))
    assert record is not None
    lake.write(lease_key(day), replace(record, expires_at=utc_now() - timedelta(seconds=1)).to_bytes())


# -- 1. a kill between stages -------------------------------------------------------------------------
KILL_QUERIES = ["#DataEng", "prefect polars"]
KILL_TWEETS, BASELINE_TWEETS = 70, 40


@pytest.fixture(scope="module")
def _baselines() -> dict[date, Path]:
    return {}


@pytest.fixture
def baseline(prefect_server: None, day: date, tmp_path_factory: pytest.TempPathFactory,
             _baselines: dict[date, Path]) -> Path:
    """A root where `day` was done once with other data (fewer tweets), made once and copied by each case:
    a killed re-run with new data must not leave the warehouse mixing the two."""
    if day not in _baselines:
        root = tmp_path_factory.mktemp("baseline")
        daily(day=day, settings=PipelineSettings(queries=KILL_QUERIES, sample_tweets=BASELINE_TWEETS, local_root=str(root)))
        _baselines[day] = root
    return _baselines[day]


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
def test_kill_between_stages_then_a_rerun_equals_a_clean_replay(
    baseline: Path, tmp_path: Path, day: date, boundary: str
) -> None:
    root = tmp_path / "day"
    shutil.copytree(baseline, root)
    lake = lake_of(root)
    assert has_success_record(lake, day)
    options = ["--day", day.isoformat(), "--local-root", str(root), "--sample-tweets", str(KILL_TWEETS)]
    run = start_stopped(boundary, [*options, *(a for q in KILL_QUERIES for a in ("--query", q))],
                        tmp_path / "killed.log")

    assert run.kill() == -signal.SIGKILL
    # What the kill left: the day not done (its old record of success withdrawn, no new one), the dead run's
    # lease (another run waits for it to expire) and, killed mid-curate, its spool folder.
    assert not has_success_record(lake, day)
    with pytest.raises(DayBusyError, match=rf"pid {run.proc.pid} holds its lease"):
        daily(day=day, settings=PipelineSettings(queries=KILL_QUERIES, sample_tweets=KILL_TWEETS, local_root=str(root), lease_wait_seconds=0))
    spool = f"{SPOOL_PREFIX}{run.proc.pid}-*"
    assert bool(list(Path(tempfile.gettempdir()).glob(spool))) is (boundary == "mid-curate")
    left = warehouse_tables(root)

    expire_lease(lake, day)
    if boundary == "mid-landing":  # a replay (or backfill) of the day refuses it, and loads nothing
        # The record written when the landing started still says so (land_pages keeps it).
        with pytest.raises(IncompleteDayError, match=f"not complete.*sample {re.escape(repr(KILL_QUERIES[1]))}: {re.escape(UNFINISHED)}"):
            daily(day=day, settings=PipelineSettings(source="replay", local_root=str(root)))
        assert warehouse_tables(root) == left and not has_success_record(lake, day)
    daily(day=day, settings=PipelineSettings(queries=KILL_QUERIES, sample_tweets=KILL_TWEETS, local_root=str(root)))

    assert has_success_record(lake, day) and incomplete_key(day) not in lake.list("runs/")
    assert_equals_clean_replay(root, day, tmp_path)
    record = assert_every_tweet_accounted(root, day)
    assert record["skipped"] == {} and record["cleaned"] == {}
    assert warehouse_tweet_ids(root) == set().union(*(sample_ids(q, KILL_TWEETS, day) for q in KILL_QUERIES))
    assert not list(Path(tempfile.gettempdir()).glob(spool))  # the re-run removed the dead run's spool
    final = warehouse_tables(root)
    # The kill mattered: before the re-run the warehouse held the old day (or, killed mid-load, a mix:
    # the day's new tweets beside its old users), except once the load had committed.
    assert (left == final) is (boundary == "loaded")
    if boundary == "mid-load":
        assert left["tweets"] == final["tweets"] and left["users"] != final["users"]


# -- 2. two concurrent runs of one day with different data --------------------------------------------
FIRST_QUERY, FIRST_TWEETS = "#DataEng", 60
SECOND_QUERY, SECOND_TWEETS = "prefect polars", 80


@pytest.mark.parametrize("wait", [0, 600], ids=["second-fails", "second-waits"])
def test_two_concurrent_runs_of_one_day_with_different_data_lose_no_tweet(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, day: date, wait: float
) -> None:
    """The first run is a CLI process, stopped while it holds the day's lease with its pages landed; the
    second, another query and size, starts in this process meanwhile and fails at once or waits."""
    import tasks.runs.lease

    root = tmp_path / "day"
    first = start_stopped("landed", ["--day", day.isoformat(), "--local-root", str(root), "--query", FIRST_QUERY,
                                     "--sample-tweets", str(FIRST_TWEETS)], tmp_path / "first.log")
    waiting = threading.Event()
    real_sleep = tasks.runs.lease.sleep

    def waiting_for_the_lease(seconds: float) -> None:
        waiting.set()
        real_sleep(min(seconds, 0.05))

    monkeypatch.setattr(tasks.runs.lease, "sleep", waiting_for_the_lease)
    outcome: list[object] = []

    def second() -> None:
        try:
            outcome.append(daily(day=day, settings=PipelineSettings(queries=[SECOND_QUERY], sample_tweets=SECOND_TWEETS, local_root=str(root), lease_wait_seconds=wait)))
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcome.append(exc)

    thread = threading.Thread(target=second, name="second")
    thread.start()
    if wait:
        assert waiting.wait(GENEROUS), "the second run never waited for the lease"
    else:
        thread.join(GENEROUS)
    assert first.resume() == 0, tail(first.log)
    thread.join(GENEROUS)
    assert not thread.is_alive()

    lake = lake_of(root)
    [second_outcome] = outcome
    expected = sample_ids(FIRST_QUERY, FIRST_TWEETS, day)
    if wait:
        assert not isinstance(second_outcome, BaseException), second_outcome
        expected |= sample_ids(SECOND_QUERY, SECOND_TWEETS, day)
    else:
        assert isinstance(second_outcome, DayBusyError), second_outcome
        assert f"pid {first.proc.pid} holds its lease" in str(second_outcome)
        assert all(SECOND_QUERY.split()[0] not in k for k in lake.list("raw/"))  # it landed nothing
    assert has_success_record(lake, day)
    assert_equals_clean_replay(root, day, tmp_path)
    record = assert_every_tweet_accounted(root, day)
    assert record["skipped"] == {}
    assert warehouse_tweet_ids(root) == expected  # every tweet either run landed, and only those


def test_a_run_stalled_past_its_lease_leaves_no_day_marked_done_without_the_other_runs_tweets(
    prefect_server: None, tmp_path: Path, day: date
) -> None:
    """A run frozen past its lease (a paused machine) while another run takes the day over: on resuming it
    learns at its next stage that the lease is gone, stops, and withdraws the day's record of success. What
    must hold: a day marked done holds every tweet landed for it, and the stalled run does not end well."""
    root = tmp_path / "day"
    first = start_stopped("landed", ["--day", day.isoformat(), "--local-root", str(root), "--query", FIRST_QUERY,
                                     "--sample-tweets", str(FIRST_TWEETS)], tmp_path / "first.log")
    lake = lake_of(root)
    expire_lease(lake, day)  # the first run is frozen (a paused VM) past its lease
    daily(day=day, settings=PipelineSettings(queries=[SECOND_QUERY], sample_tweets=SECOND_TWEETS, local_root=str(root), lease_wait_seconds=0))
    landed = sample_ids(FIRST_QUERY, FIRST_TWEETS, day) | sample_ids(SECOND_QUERY, SECOND_TWEETS, day)
    assert warehouse_tweet_ids(root) == landed  # the second run took the lease over and did the whole day

    code = first.resume()

    if has_success_record(lake, day):
        assert warehouse_tweet_ids(root) == landed, (
            f"the day is marked done, and {len(landed - warehouse_tweet_ids(root))} of its landed tweets "
            f"are missing from the warehouse (first run exit {code})")
        assert_equals_clean_replay(root, day, tmp_path)
    # ...and the stalled run does not end well: it says it lost the lease (LeaseLostError, or the heartbeat).
    assert code != 0 and re.search(r"lost the lease|the lease expired and .* took it", tail(first.log)), code


# -- 3. a malformed page mid-pagination ---------------------------------------------------------------
X_QUERIES = {"#DataEng": 120, "prefect polars": 250}  # pages of 100: requests 1-2, then 3-5


def test_malformed_page_mid_pagination_fails_the_day_then_a_rerun_equals_a_clean_replay(
    prefect_server: None, x_api_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", x_api_server.token)
    day = utc_today() - timedelta(days=1)
    published = set().union(*(x_api_server.publish(q, day, n) for q, n in X_QUERIES.items()))
    x_api_server.fail(200, on_request=4)  # the second query's second page of three: a body that is not JSON
    root = tmp_path / "day"
    options: dict[str, Any] = {"day": day, "settings": PipelineSettings(
        queries=list(X_QUERIES), source="x_api", x_api_base_url=x_api_server.url, local_root=str(root))}

    with pytest.raises(IncompleteDayError, match=f"{day} is not complete.*prefect polars.*not JSON"):
        daily(**options)

    lake = lake_of(root)
    assert not has_success_record(lake, day)
    [problem] = orjson.loads(lake.read(incomplete_key(day)))["incomplete_queries"]
    assert problem["query"] == "prefect polars" and problem["complete"] is False
    assert not (root / WAREHOUSE).exists()  # nothing of the day was loaded

    daily(**options)  # what catch-up does next: the day again, the second query from its saved cursor

    assert has_success_record(lake, day) and incomplete_key(day) not in lake.list("runs/")
    assert_equals_clean_replay(root, day, tmp_path)
    record = assert_every_tweet_accounted(root, day)
    assert record["skipped"] == {}
    # The body that was not JSON stays under errors/ as received, and is counted (what the bucket holds).
    assert record["malformed_pages"] == 1 and len(lake.list("errors/")) == 1
    assert warehouse_tweet_ids(root) == published


# -- 4. a truncated raw file --------------------------------------------------------------------------
def test_truncated_raw_file_fails_the_day_naming_it_and_the_rest_equals_a_clean_replay(
    prefect_server: None, tmp_path: Path, day: date
) -> None:
    root = tmp_path / "day"
    sample = {"settings": PipelineSettings(queries=KILL_QUERIES, sample_tweets=80, local_root=str(root))}
    daily(day=day, **sample)
    lake = lake_of(root)
    cut, whole = landed_raw_keys(lake, day)[0], sample_ids(KILL_QUERIES[0], 80, day)
    data = lake.read(cut)
    lake.write(cut, data[: len(data) // 2])

    with pytest.raises(IncompleteDayError, match=f"1 raw file could not be read .*{re.escape(cut)}"):
        daily(day=day, settings=PipelineSettings(source="replay", local_root=str(root)))

    assert not has_success_record(lake, day)
    record = run_record(lake, day)
    assert record["summary_key"] == incomplete_key(day) and record["unreadable_files"] == [cut]
    assert_equals_clean_replay(root, day, tmp_path, leave_out={cut})
    assert_every_tweet_accounted(root, day, leave_out={cut})
    assert record["skipped"] == {}

    daily(day=day, **sample)  # the fix the error names: land the day again from its source

    assert has_success_record(lake, day) and incomplete_key(day) not in lake.list("runs/")
    assert_equals_clean_replay(root, day, tmp_path)
    assert whole <= warehouse_tweet_ids(root)


# -- 5. bad values ------------------------------------------------------------------------------------
SURROGATE, INVALID_UTF8 = "@@lone-surrogate@@", "@@invalid-utf8@@"
BEYOND_64_BITS = 987_654_321_987  # written as 2^64 + 5, which no JSON encoder here writes
LONG_POST = "x" + "\u6f22" * 25_000  # 75,001 bytes: over note_text's 65,535; the cut falls inside a character


def _bad(tweet: dict[str, Any], kind: str) -> None:
    """Give `tweet` the bad value `kind` (in place)."""
    metrics = tweet.setdefault("public_metrics", {})
    match kind:
        case "id as a JSON number":
            tweet["id"] = int(tweet["id"])
        case "lone surrogate":
            tweet["text"] = f"lone {SURROGATE} surrogate"
        case "invalid UTF-8":
            tweet["text"] = f"caf{INVALID_UTF8}"
        case "count above 2^63":
            metrics["like_count"] = 2**63 + 1
        case "negative count":
            metrics["retweet_count"] = -5
        case "huge count":
            metrics["impression_count"] = 10**13
        case "NUL":
            tweet["text"] = "before\u0000after"
        case "long post":
            tweet["note_tweet"] = {"text": LONG_POST}


# (page, tweet index) -> bad value: spread over two pages, away from the pages' first and last tweets
# (the sample's hard cases: an author it cannot expand, a tweet without optional fields, one on two pages).
BAD_TWEETS = {
    (0, 5): "lone surrogate", (0, 20): "count above 2^63", (0, 30): "NUL", (0, 40): "huge count",
    (1, 5): "id as a JSON number", (1, 10): "invalid UTF-8", (1, 15): "negative count", (1, 20): "long post",
}
DROPPED = {"id as a JSON number", "lone surrogate", "invalid UTF-8"}  # each costs its tweet; the rest a value


def land_with_bad_values(lake: Bucket, day: date, query: str, tweets: int) -> dict[str, str]:
    """Land the sample pages of `query`, with the `BAD_TWEETS` and two bad users (an id as a number, a count
    beyond 64 bits), as `land_pages` writes them, then the bytes no encoder writes; returns tweet id -> value."""
    bodies = [copy.deepcopy(p.body) for p in SampleSource(tweets).pages(query, day)]
    requests = [p.request for p in SampleSource(tweets).pages(query, day)]
    victims: dict[str, str] = {}
    for (page, index), kind in BAD_TWEETS.items():
        tweet = bodies[page]["data"][index]
        victims[tweet["id"]] = kind
        _bad(tweet, kind)
    bodies[0]["includes"]["users"][3]["id"] = int(bodies[0]["includes"]["users"][3]["id"])
    bodies[1]["includes"]["users"][2]["public_metrics"]["followers_count"] = BEYOND_64_BITS
    landed = land_pages(lake, "sample", query, day, (FetchedPage(r, b) for r, b in zip(requests, bodies, strict=True)))
    [key] = landed.keys
    text = gzip.decompress(lake.read(key))
    for mark, raw in ((SURROGATE, b"\\ud800"), (INVALID_UTF8, b"\xe9"), (str(BEYOND_64_BITS), b"%d" % (2**64 + 5))):
        assert text.count(mark.encode()) == 1, mark
        text = text.replace(mark.encode(), raw)
    landed.bytes = lake.write(key, gzip.compress(text, mtime=0)).size
    landed.complete = True
    write_landing(lake, day, landed)
    return victims


def land_clean(lake: Bucket, day: date, query: str, tweets: int) -> None:
    landed: LandedQuery = land_pages(lake, "sample", query, day, SampleSource(tweets).pages(query, day))
    landed.complete = True
    write_landing(lake, day, landed)


def test_bad_values_cost_only_their_tweet_or_value_each_counted_by_reason(
    prefect_server: None, tmp_path: Path, day: date
) -> None:
    root = tmp_path / "day"
    lake = lake_of(root)
    victims = land_with_bad_values(lake, day, "#DataEng", 150)
    land_clean(lake, day, "prefect polars", 40)

    summary = daily(day=day, settings=PipelineSettings(source="replay", local_root=str(root)))

    assert has_success_record(lake, day)
    assert summary.skipped == {"tweet id not a string": 1, BAD_TEXT: 2, "user id not a string": 1}
    assert summary.cleaned == {
        f"tweets.like_count: {COUNT_OUT_OF_RANGE}": 1,
        f"tweets.retweet_count: {COUNT_OUT_OF_RANGE}": 1,
        f"tweets.impression_count: {COUNT_OUT_OF_RANGE}": 1,
        "tweets.text: NUL characters removed": 1,
        "tweets.note_text: cut at a UTF-8 boundary to 65535 bytes": 1,
        f"users.followers_count: {COUNT_OUT_OF_RANGE}": 1,
    }
    good = (sample_ids("#DataEng", 150, day) | sample_ids("prefect polars", 40, day)) - {
        tweet_id for tweet_id, kind in victims.items() if kind in DROPPED}
    assert warehouse_tweet_ids(root) == good  # every good tweet of the same pages
    assert_equals_clean_replay(root, day, tmp_path)
    assert_every_tweet_accounted(root, day)

    kept = {kind: tweet_id for tweet_id, kind in victims.items() if kind not in DROPPED}
    con = duckdb.connect(str(root / WAREHOUSE), read_only=True)
    try:
        def value(column: str, kind: str, table: str = "tweets") -> Any:
            [(found,)] = con.execute(f"SELECT {column} FROM {table} WHERE tweet_id = ?", [int(kept[kind])]).fetchall()
            return found

        assert value("like_count", "count above 2^63") is None
        assert value("like_count", "count above 2^63", "tweet_metrics_daily") is None
        assert value("retweet_count", "negative count") is None
        assert value("impression_count", "huge count") is None
        assert value("text", "NUL") == "beforeafter"
        note = value("note_text", "long post").encode()
        assert len(note) == 65_533 and LONG_POST.encode().startswith(note)  # whole characters only
    finally:
        con.close()

