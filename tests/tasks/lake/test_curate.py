import gzip
import io
import itertools
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import orjson
import polars as pl
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect.filesystems import LocalFileSystem

import tasks.lake.curate
from tasks.lake.bucket import LocalBucket
from tasks.lake.curate import (
    DaySpool,
    _bounded_map,
    curate_day,
    curate_raw_files,
    curated_prefix,
    manifest_key,
)
from tasks.lake.land import FetchedPage, encode_pages
from tasks.lake.normalize import deduplicate
from tasks.schema import TABLES
from tasks.sources.sample import generate_pages
from tests.prefect_api import recorded_task_run

HARD = 'He said "hi", then, well,\nleft 😀 𠜎 — مرحبا'


def test_parts_manifests_and_parquet_round_trip(
    local_bucket: LocalBucket, day: date, sample_frames, curate_frames
) -> None:
    frames = sample_frames(day, 250)
    files = curate_frames(local_bucket, day, frames, parts=3)
    tweets = files["tweets"]
    assert tweets.rows == 250 and len(tweets.parquet) == 3
    back = pl.concat([pl.read_parquet(io.BytesIO(local_bucket.read(k))) for k in tweets.keys("parquet")])
    expected = deduplicate(frames["tweets"], "tweets")
    assert back.sort("tweet_id").equals(expected.sort("tweet_id"))
    manifest = orjson.loads(local_bucket.read(manifest_key("tweets", day, "parquet")))
    assert [e["url"] for e in manifest["entries"]] == [local_bucket.url(k) for k in tweets.keys("parquet")]
    assert all(e["mandatory"] for e in manifest["entries"])
    assert sum(e["meta"]["record_count"] for e in manifest["entries"]) == 250
    assert [e["meta"]["content_length"] for e in manifest["entries"]] == [o.size for o in tweets.parquet]
    csv_manifest = orjson.loads(local_bucket.read(manifest_key("tweets", day, "csv")))
    assert all(e["url"].endswith(".csv.gz") for e in csv_manifest["entries"])
    metadata = pq.ParquetFile(io.BytesIO(local_bucket.read(tweets.keys("parquet")[0]))).metadata.row_group(0)
    statistics = {metadata.column(i).path_in_schema: metadata.column(i).is_stats_set for i in range(metadata.num_columns)}
    assert statistics["tweet_id"] and statistics["created_at"] and statistics["lang"]
    assert not statistics["text"]  # free text: min/max would prune nothing


def test_rerun_with_fewer_parts_leaves_no_stale_files(
    local_bucket: LocalBucket, day: date, sample_frames, curate_frames
) -> None:
    frames = sample_frames(day, 250)
    curate_frames(local_bucket, day, frames, parts=4)
    files = curate_frames(local_bucket, day, frames, parts=2)
    listed = set(local_bucket.list(curated_prefix("tweets", day)))
    assert listed == set(files["tweets"].keys("parquet") + files["tweets"].keys("csv"))


def test_hard_csv_reads_back_identically_through_postgresql_copy(
    local_bucket: LocalBucket, day: date, pg_server: str, sample_frames, curate_frames
) -> None:
    frames = sample_frames(day, 120)
    tweets = frames["tweets"].with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(HARD)).otherwise(pl.col("text")).alias("text"),
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("")).otherwise(pl.col("lang")).alias("lang"),
    )
    frames["tweets"] = tweets
    files = curate_frames(local_bucket, day, frames, parts=1)
    data = gzip.decompress(local_bucket.read(files["tweets"].keys("csv")[0]))
    with psycopg2.connect(pg_server) as con, con.cursor() as cur:
        cur.execute(TABLES["tweets"].create_sql("postgresql", name="csv_check").replace(
            "CREATE TABLE", "CREATE TEMP TABLE"))
        cur.copy_expert("COPY csv_check FROM STDIN (FORMAT csv, HEADER true)", io.BytesIO(data))
        cur.execute("SELECT tweet_id, text, lang, created_at FROM csv_check ORDER BY tweet_id")
        rows = cur.fetchall()
    expected = deduplicate(tweets, "tweets").sort("tweet_id")
    assert [r[1] for r in rows] == expected["text"].to_list()
    assert HARD in [r[1] for r in rows]
    # null stays null and the empty string stays empty
    assert [r[2] for r in rows] == expected["lang"].to_list()
    assert [r[3] for r in rows] == expected["created_at"].to_list()


def test_spool_requires_a_part(day: date) -> None:
    with pytest.raises(ValueError):
        DaySpool(day, 0)


def test_spool_keeps_batch_order_empty_parts_and_releases_files(day: date) -> None:
    """Batches spooled out of order (as worker threads finish) still let the later batch win a tie."""
    fetched = pl.lit("2026-11-24T12:00:00Z").str.to_datetime(time_zone="UTC", time_unit="us")

    def tweets(likes: int) -> pl.DataFrame:
        frame = pl.DataFrame({"tweet_id": [3, 6, 9], "like_count": [likes] * 3, "text": ["a", None, "😀"]})
        return TABLES["tweets"].conform(frame.with_columns(fetched.alias("fetched_at"), pl.lit(day).alias("dt")))

    spool = DaySpool(day, parts=3)
    try:
        spool.add({"tweets": tweets(likes=2)}, batch=1)
        spool.add({"tweets": tweets(likes=1)}, batch=0)
        spool.add({"users": TABLES["users"].empty_frame()}, batch=2)  # an empty table spools nothing
        part = spool.part_frame("tweets", 0)  # every id is 0 modulo 3
        assert part["tweet_id"].to_list() == [3, 6, 9] and part["like_count"].to_list() == [2, 2, 2]
        assert part["text"].to_list() == ["a", None, "😀"]
        assert spool.part_frame("tweets", 1).is_empty() and spool.part_frame("tweets", 2).is_empty()
        assert spool.part_frame("users", 0).schema == TABLES["users"].polars_schema
        assert any(spool.root.iterdir())
        spool.release("tweets")
        assert not any(spool.root.iterdir())
    finally:
        spool.cleanup()
    assert not spool.root.exists()


def test_spool_leaves_out_user_rows_a_spooled_row_supersedes(day: date) -> None:
    """A later fetch wins, and at the same fetch time a later batch: rows that lose to a row already spooled
    are never written, and the part is what deduplicating every row gives."""

    def users(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
        frame = pl.DataFrame({"user_id": [r[0] for r in rows], "name": [r[1] for r in rows],
                              "fetched_at": [r[2] for r in rows]})
        frame = frame.with_columns(pl.col("fetched_at").str.to_datetime(time_zone="UTC", time_unit="us"),
                                   pl.lit(day).alias("dt"))
        return TABLES["users"].conform(frame)

    batches = {  # spooled in this order, newest batch first, as curate does
        2: users([(1, "b2", "2026-11-24T12:00:00Z"), (2, "b2", "2026-11-24T12:00:00Z")]),
        1: users([(1, "b1 tie", "2026-11-24T12:00:00Z"), (2, "b1 later", "2026-11-24T13:00:00Z"),
                  (3, "b1", "2026-11-24T12:00:00Z")]),
        0: users([(1, "b0 older", "2026-11-24T11:00:00Z"), (3, "b0 tie", "2026-11-24T12:00:00Z")]),
        3: users([(2, "b3 older", "2026-11-24T12:30:00Z"), (1, "b3 tie", "2026-11-24T12:00:00Z")]),
    }
    spool = DaySpool(day, parts=1)
    try:
        for number, frame in batches.items():
            spool.add({"users": frame}, batch=number)
        spooled = sum(pa.ipc.open_file(pa.memory_map(str(f))).read_all().num_rows for f in spool.root.glob("users-*"))
        part = spool.part_frame("users", 0)
    finally:
        spool.cleanup()
    everything = pl.concat([batches[n] for n in sorted(batches)])  # arrival order decides a tie
    assert part.equals(deduplicate(everything, "users"))
    assert dict(part.select("user_id", "name").iter_rows()) == {1: "b3 tie", 2: "b1 later", 3: "b1"}
    assert spooled == 5  # of 9: "b1 tie", "b0 older", "b0 tie" and "b3 older" lost to a row spooled before them


def test_curate_leaves_the_same_users_with_or_without_leaving_out_superseded_rows(
    tmp_path, day: date, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Users shown on many pages fetched at different times, in raw files of any fetch order."""
    bodies = list(generate_pages(day, "q", 2000, page_size=50))
    fetched = [f"2026-11-24T{h:02d}:00:00.000Z" for h in (9, 14, 11, 14, 10, 13, 12, 9)]
    pages = [FetchedPage(request={"source": "sample", "query": "q", "fetched_at": fetched[i % len(fetched)]}, body=b)
             for i, b in enumerate(bodies)]
    users = {}
    for repeating in (("users",), ()):
        monkeypatch.setattr(tasks.lake.curate, "REPEATING", repeating)
        bucket = LocalBucket(LocalFileSystem(basepath=str(tmp_path / f"lake-{len(repeating)}")))
        keys = [bucket.write(f"raw/q/part-{i:05d}.jsonl.gz", encode_pages(pages[i * 5:(i + 1) * 5])).key
                for i in range(len(pages) // 5)]
        curated = curate_raw_files(bucket, day, keys, parts=2, workers=3, batch_bytes=1)
        users[repeating] = pl.concat([pl.read_parquet(bucket.local_path(k)) for k in curated.tables["users"].keys("parquet")])
    assert sum(len(b.get("includes", {}).get("users", [])) for b in bodies) > 1.5 * users[()].height  # repeats
    assert users[("users",)].equals(users[()])


def test_parallel_curate_writes_what_one_worker_writes(tmp_path, day: date) -> None:
    """Batches normalized on several threads and parts encoded in parallel give the same files."""
    request = {"source": "sample", "query": "q", "fetched_at": "2026-11-24T23:59:59.999Z"}
    pages = [FetchedPage(request=request, body=b) for b in generate_pages(day, "q", 1200, page_size=50)]
    bounds = [0, 1, 6, 11, 16, 21, len(pages)]  # the tweet served on pages 0 and 1 is in two raw files
    results = {}
    for workers, batch_bytes in ((1, 1 << 30), (3, 1)):  # one batch on one thread; a batch per file on three
        bucket = LocalBucket(LocalFileSystem(basepath=str(tmp_path / f"lake-{workers}")))
        keys = [bucket.write(f"raw/q/part-{i:05d}.jsonl.gz", encode_pages(pages[a:b])).key
                for i, (a, b) in enumerate(itertools.pairwise(bounds))]
        curated = curate_raw_files(bucket, day, keys, parts=2, workers=workers, batch_bytes=batch_bytes)
        assert curated.stats.tweets_seen == 1201
        for files in curated.tables.values():  # parts written as they are encoded, listed in part order
            for fmt in ("parquet", "csv"):
                assert files.keys(fmt) == sorted(files.keys(fmt))
        results[workers] = {
            name: pl.concat([pl.read_parquet(bucket.local_path(k)) for k in files.keys("parquet")])
            for name, files in curated.tables.items() if files.rows
        }
        csv = b"".join(gzip.decompress(bucket.read(k)) for k in curated.tables["tweets"].keys("csv"))
        results[workers]["csv"] = csv
    assert results[1].keys() == results[3].keys()
    for name in TABLES:
        if name in results[1]:
            assert results[1][name].equals(results[3][name]), name
    assert results[1]["csv"] == results[3]["csv"]
    assert results[1]["tweets"].height == 1200


@pytest.mark.parametrize("ordered", [True, False])
def test_bounded_map_keeps_at_most_twice_the_workers_in_flight(ordered: bool) -> None:
    """Unordered, results come as they complete (a slow first item holds up nothing); either way no
    more than `2 * workers` items are taken from the input before their results are consumed."""
    taken = consumed = 0
    most_in_flight = 0
    lock = threading.Lock()

    def items():
        nonlocal taken, most_in_flight
        for i in range(12):
            with lock:
                taken += 1
                most_in_flight = max(most_in_flight, taken - consumed)
            yield i

    def work(i: int) -> int:
        time.sleep(0.2 if i == 0 else 0.01)
        return i

    results = []
    for result in _bounded_map(work, items(), workers=2, ordered=ordered):
        with lock:
            consumed += 1
        results.append(result)
    assert sorted(results) == list(range(12))
    assert most_in_flight <= 4
    assert (results == list(range(12))) is ordered  # unordered: item 0 finishes after the quick ones


def test_truncated_raw_file_is_named_counted_and_not_retried(
    prefect_server, local_bucket: LocalBucket, day: date
) -> None:
    """A raw file cut short (an interrupted copy): curate skips it, names it and goes on with the others;
    a deterministic error, so no task retry."""
    keys = []
    for query in ("q1", "q2", "q3"):
        request = {"source": "sample", "query": query, "fetched_at": "2026-11-24T23:59:59.999Z"}
        pages = [FetchedPage(request=request, body=b) for b in generate_pages(day, query, 100)]
        key = f"raw/sample/{query}/dt={day}/part-00000.jsonl.gz"
        keys.append(local_bucket.write(key, encode_pages(pages)).key)
    whole = local_bucket.read(keys[1])
    local_bucket.write(keys[1], whole[: len(whole) // 2])

    state = curate_day(local_bucket, day, keys, return_state=True)

    assert state.is_completed(), state.message
    curated = state.result()
    assert curated.unreadable_files == [keys[1]]
    assert curated.tables["tweets"].rows == 200  # the two whole files
    assert recorded_task_run(state).run_count == 1


def _spooling_process(workdir: Path) -> tuple[subprocess.Popen[str], Path]:
    """Another run, in its own process, that has made its spool folder in `workdir` and is still curating."""
    code = ("import sys, time; from datetime import date; from pathlib import Path; "
            "from tasks.lake.curate import DaySpool; "
            "print(DaySpool(date(2026, 11, 24), 1, Path(sys.argv[1])).root, flush=True); time.sleep(600)")
    process = subprocess.Popen([sys.executable, "-c", code, str(workdir)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_spool_folder_of_a_killed_run_is_removed_by_the_next_run(tmp_path: Path, day: date) -> None:
    killed, killed_spool = _spooling_process(tmp_path)
    running, running_spool = _spooling_process(tmp_path)
    try:
        killed.kill()  # SIGKILL: no `finally` of the run removes its spool
        killed.wait()
        assert killed_spool.is_dir()

        spool = DaySpool(day, 1, tmp_path)
        spool.cleanup()

        assert not killed_spool.exists()
        assert running_spool.is_dir()  # a live run's spool is left alone
    finally:
        running.kill()
        running.wait()
