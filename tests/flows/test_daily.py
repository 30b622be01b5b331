from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest

from flows.daily import daily, parse_args, utc_today
from tasks.bucket import load_bucket
from tasks.land import fetch_and_land, landed_raw_keys
from tasks.schema import TABLES
from tasks.source import FetchedPage, SampleSource

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


class FetchLostMidDay(SampleSource):
    """Test double: the sample source, whose connection drops after `pages_before_failure` pages."""

    def __init__(self, pages_before_failure: int) -> None:
        super().__init__(tweets_per_query=600)
        self.pages_before_failure = pages_before_failure

    def pages(self, query: str, day: date) -> Iterator[FetchedPage]:
        for n, page in enumerate(super().pages(query, day)):
            if n == self.pages_before_failure:
                raise ConnectionError("connection reset by peer")
            yield page


def test_replay_of_a_day_whose_landing_was_interrupted_fails_naming_the_query(
    prefect_server, tmp_path: Path, day: date
) -> None:
    bucket = load_bucket(None, tmp_path / "lake")
    daily(day=day, queries=QUERIES[1:], sample_tweets=150, local_root=str(tmp_path))
    land_once = fetch_and_land.with_options(retries=0)
    with pytest.raises(ConnectionError):
        land_once(FetchLostMidDay(pages_before_failure=4), bucket, QUERIES[0], day, pages_per_file=2)
    assert len(landed_raw_keys(bucket, day, "sample")) == 2 + 1  # two files of the cut query, one complete

    with pytest.raises(RuntimeError, match=f"{day} is not complete.*{QUERIES[0]}.*ConnectionError"):
        daily(day=day, source="replay", local_root=str(tmp_path))

    runs = tmp_path / "lake" / "runs" / f"dt={day}"
    assert not (runs / "summary.json").exists()  # the earlier run's record of success is withdrawn too
    [missing] = orjson.loads((runs / "incomplete.json").read_bytes())["incomplete_queries"]
    assert missing["query"] == QUERIES[0] and missing["complete"] is False


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
