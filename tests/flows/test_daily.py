from datetime import date, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest
from prefect.filesystems import LocalFileSystem

from flows.daily import daily, parse_args, utc_today
from tasks.bucket import LocalBucket
from tasks.catchup import successful_days
from tasks.land import landed_raw_keys
from tasks.schema import TABLES
from tasks.summary import IncompleteDayError, incomplete_key

QUERIES = ["#DataEng", "prefect polars"]


def _snapshot(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    lake = root / "lake"
    keys = {p.relative_to(lake).as_posix(): p.stat().st_size for p in lake.rglob("*") if p.is_file()}
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        counts = {name: con.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in TABLES}
    finally:
        con.close()
    return keys, counts


def test_daily_twice_on_the_same_day_changes_nothing(prefect_server, tmp_path: Path, day: date) -> None:
    first = daily(day=day, queries=QUERIES, sample_tweets=300, local_root=str(tmp_path))
    keys_1, counts_1 = _snapshot(tmp_path)
    second = daily(day=day, queries=QUERIES, sample_tweets=300, local_root=str(tmp_path))
    keys_2, counts_2 = _snapshot(tmp_path)

    assert all(counts_1[name] > 0 for name in TABLES), counts_1
    assert counts_1["tweets"] == 600  # 2 queries x 300, the duplicate on two pages counted once
    assert counts_2 == counts_1
    assert set(keys_2) == set(keys_1)
    data = {k: v for k, v in keys_1.items() if not k.startswith("runs/")}
    assert {k: keys_2[k] for k in data} == data  # raw, curated and manifests: the same bytes
    for kind in ("raw/sample/", "curated/tweets/", "manifests/tweets/", "runs/"):
        assert any(k.startswith(kind) for k in keys_1), kind
    assert second.tables["tweets"]["new"] == 0 and second.tables["tweets"]["updated"] == 600
    assert first.tables["tweets"]["new"] == 600
    summary = orjson.loads((tmp_path / "lake" / first.summary_key).read_bytes())
    assert summary["api_errors"] == 2 and summary["tweets_fetched"] == 602


def test_replay_gives_the_same_rows(prefect_server, tmp_path: Path, day: date) -> None:
    daily(day=day, queries=QUERIES, sample_tweets=150, local_root=str(tmp_path))
    _, counts = _snapshot(tmp_path)
    (tmp_path / "warehouse.duckdb").unlink()
    daily(day=day, source="replay", local_root=str(tmp_path))
    _, replayed = _snapshot(tmp_path)
    assert replayed == counts


def test_replay_of_a_day_with_no_raw_pages_fails_clearly(prefect_server, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to replay"):
        daily(day=date(2020, 1, 1), source="replay", local_root=str(tmp_path))


def test_cli_defaults_to_today_on_embedded_defaults() -> None:
    args = parse_args([])
    assert args.day is None and args.source == "sample" and args.bucket_block is None
    assert parse_args(["--day", "2026-11-01", "--query", "a", "--query", "b"]).queries == ["a", "b"]


def test_a_run_without_a_day_catches_up_from_the_last_successful_day(prefect_server, tmp_path: Path) -> None:
    today = utc_today()
    daily(day=today - timedelta(days=2), queries=QUERIES, sample_tweets=50, local_root=str(tmp_path))
    last = daily(queries=QUERIES, sample_tweets=50, local_root=str(tmp_path), max_catchup_days=7)
    assert last.day == today
    done = sorted(p.parent.name for p in (tmp_path / "lake" / "runs").glob("dt=*/summary.json"))
    assert done == [f"dt={today - timedelta(days=n)}" for n in (2, 1, 0)]


def _lake(root: Path) -> LocalBucket:
    return LocalBucket(LocalFileSystem(basepath=str(root / "lake")))


def test_failed_rerun_of_a_successful_day_is_not_left_marked_done(prefect_server, tmp_path: Path, day: date) -> None:
    daily(day=day, queries=QUERIES, sample_tweets=50, local_root=str(tmp_path))
    assert day in successful_days(_lake(tmp_path))
    (tmp_path / "warehouse.duckdb").write_bytes(b"not a DuckDB file")  # the re-run rewrites the day, then fails

    with pytest.raises(duckdb.Error):
        daily(day=day, queries=QUERIES, sample_tweets=50, local_root=str(tmp_path))

    assert day not in successful_days(_lake(tmp_path))  # so catch-up runs the day again


def test_a_day_with_a_truncated_raw_file_fails_naming_it_and_is_not_marked_done(
    prefect_server, tmp_path: Path, day: date
) -> None:
    daily(day=day, queries=QUERIES, sample_tweets=150, local_root=str(tmp_path))
    lake = _lake(tmp_path)
    cut = landed_raw_keys(lake, day)[0]
    whole = lake.read(cut)
    lake.write(cut, whole[: len(whole) // 2])

    with pytest.raises(IncompleteDayError, match=f"1 raw file could not be read.*{cut}"):
        daily(day=day, source="replay", local_root=str(tmp_path))

    assert day not in successful_days(lake)
    summary = orjson.loads(lake.read(incomplete_key(day)))
    assert summary["unreadable_files"] == [cut]
    assert summary["tweets_fetched"] == 151  # the other query's file (one tweet is on two of its pages)
