from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.backfill import backfill, days_between
from flows.daily import daily
from tasks.schema import TABLES


def _counts(root: Path) -> dict[str, int]:
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        return {name: con.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in TABLES}
    finally:
        con.close()


def test_backfill_of_two_days_replays_the_same_rows(prefect_server, tmp_path: Path, day: date) -> None:
    first = day - timedelta(days=1)
    for each in (first, day):
        daily(day=each, queries=["#DataEng", "prefect polars"], sample_tweets=120, local_root=str(tmp_path))
    original = _counts(tmp_path)
    (tmp_path / "warehouse.duckdb").unlink()

    tweets = backfill(start=first, end=day, max_parallel=2, local_root=str(tmp_path))

    assert _counts(tmp_path) == original
    assert original["tweets"] > 0
    assert set(tweets) == {str(first), str(day)} and all(n > 0 for n in tweets.values())


def test_backfill_fails_naming_the_days_without_raw_pages(prefect_server, tmp_path: Path, day: date) -> None:
    daily(day=day, queries=["#DataEng"], sample_tweets=30, local_root=str(tmp_path))
    with pytest.raises(RuntimeError, match=f"1 of 2 days: {day - timedelta(days=1)}$"):
        backfill(start=day - timedelta(days=1), end=day, local_root=str(tmp_path))


def test_an_inverted_range_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="before start"):
        days_between(date(2026, 11, 24), date(2026, 11, 23))
