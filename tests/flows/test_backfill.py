from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest
from pydantic import SecretStr

from flows.backfill import backfill, days_between
from flows.daily import daily
from flows.settings import PipelineSettings, StorageSettings
from tasks.analytics.dashboard import ARTIFACT_KEY
from tasks.lake import open_bucket
from tasks.lake.land import landed_raw_keys
from tasks.schema import TABLES
from tasks.sources.x_api import BearerToken, XApiSource, XApiUnavailable
from tests.prefect_api import poll


def _counts(root: Path) -> dict[str, int]:
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        return {name: con.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in TABLES}
    finally:
        con.close()


def test_backfill_of_two_days_replays_the_same_rows(prefect_server, tmp_path: Path, day: date) -> None:
    first = day - timedelta(days=1)
    for each in (first, day):
        daily(day=each, settings=PipelineSettings(queries=["#DataEng", "prefect polars"], sample_tweets=120, local_root=str(tmp_path)))
    original = _counts(tmp_path)
    (tmp_path / "warehouse.duckdb").unlink()

    tweets = backfill(start=first, end=day, max_parallel=2, storage=StorageSettings(local_root=str(tmp_path)))

    assert _counts(tmp_path) == original
    assert original["tweets"] > 0
    assert set(tweets) == {str(first), str(day)} and all(n > 0 for n in tweets.values())
    # The UI's dashboard link stays on the latest day by date, even when an older day is analyzed last.
    backfill(start=first, end=first, storage=StorageSettings(local_root=str(tmp_path)))
    artifacts = poll(lambda client: client.read_latest_artifacts(),
                     lambda found: any(a.key == f"{ARTIFACT_KEY}-{first}" for a in found))
    [latest] = [a for a in artifacts if a.key == ARTIFACT_KEY]
    assert f"dashboard for {day}]" in str(latest.data), latest.data


def test_backfill_fails_naming_the_days_without_raw_pages(prefect_server, tmp_path: Path, day: date) -> None:
    daily(day=day, settings=PipelineSettings(queries=["#DataEng"], sample_tweets=30, local_root=str(tmp_path)))
    with pytest.raises(RuntimeError, match=f"1 of 2 days: {day - timedelta(days=1)}$"):
        backfill(start=day - timedelta(days=1), end=day, storage=StorageSettings(local_root=str(tmp_path)))


def test_backfill_of_a_day_whose_landing_was_interrupted_loads_nothing_and_writes_no_summary(
    prefect_server, x_api_server, tmp_path: Path, day: date
) -> None:
    x_api_server.publish("#DataEng", day, 350)
    for n in (3, 4):  # the API fails on the third page, after two pages were landed
        x_api_server.fail(502, on_request=n)
    bucket = open_bucket(None, tmp_path)
    noon_after = datetime.combine(day + timedelta(days=1), time(12), tzinfo=UTC)
    source = XApiSource(BearerToken(SecretStr(x_api_server.token), "set the token"), max_attempts=2,
                        api_base_url=x_api_server.url, backoff_seconds=0.05, clock=lambda: noon_after)
    with pytest.raises(XApiUnavailable):
        source.land(bucket, "#DataEng", day)
    assert landed_raw_keys(bucket, day)  # half a day is in the bucket

    with pytest.raises(RuntimeError, match=f"1 of 1 days: {day}$"):
        backfill(start=day, end=day, storage=StorageSettings(local_root=str(tmp_path)))

    assert not bucket.list(f"runs/dt={day}/summary.json")
    assert not (tmp_path / "warehouse.duckdb").exists()
    [missing] = orjson.loads(bucket.read(f"runs/dt={day}/incomplete.json"))["incomplete_queries"]
    assert missing["query"] == "#DataEng" and missing["pages"] == 2 and "not finished" in missing["reason"]


def test_an_inverted_range_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="before start"):
        days_between(date(2026, 11, 24), date(2026, 11, 23))
