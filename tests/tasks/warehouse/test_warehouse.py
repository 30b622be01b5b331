"""The merge every warehouse runs (DuckDB, PostgreSQL, Redshift through the COPY double): a day's load
replaces that day's rows exactly, and never puts an older copy of a row over a newer one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from tasks.lake.bucket import Bucket
from tasks.schema import LOADED_DAYS, TABLES, qualified, quote_ident
from tasks.warehouse.base import DuckDBWarehouse, Warehouse
from tasks.warehouse.postgres import PostgresWarehouse, engine_url

CHILDREN = ("tweet_hashtags", "tweet_cashtags", "tweet_mentions", "tweet_urls", "tweet_references")


@pytest.fixture(params=["duckdb", "postgresql", "redshift"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Warehouse, Bucket]]:
    """A warehouse with its tables, and the bucket its loads read from."""
    if request.param == "duckdb":
        warehouse: Warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
        bucket = request.getfixturevalue("local_bucket")
    elif request.param == "postgresql":
        url = engine_url(request.getfixturevalue("pg_server"), None, "postgresql+psycopg2")
        warehouse = PostgresWarehouse(url, f"merge_{uuid.uuid4().hex[:10]}")
        bucket = request.getfixturevalue("local_bucket")
    else:
        warehouse, _ = request.getfixturevalue("redshift")()
        bucket = request.getfixturevalue("lake")
    warehouse.ensure_tables()
    yield warehouse, bucket
    if request.param != "redshift":  # the redshift fixture closes its own
        warehouse.close()


def _load(target: tuple[Warehouse, Bucket], curate_frames, day: date, frames: dict[str, pl.DataFrame]) -> dict:
    warehouse, bucket = target
    files = curate_frames(bucket, day, frames)
    return {name: warehouse.load_day(bucket, files[name]) for name in TABLES}


def _contents(warehouse: Warehouse, table: str) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in TABLES[table].column_names)
    return sorted(warehouse.query(f"SELECT {cols} FROM {qualified(table, warehouse.schema)}"))


def _rows(frame: pl.DataFrame) -> list[tuple]:
    return sorted(frame.rows())


def _only(frames: dict[str, pl.DataFrame], tweet_ids: list[int]) -> dict[str, pl.DataFrame]:
    """The day's frames as a run that saw only `tweet_ids` writes them (users: those tweets' authors)."""
    kept = {name: f.filter(pl.col("tweet_id").is_in(tweet_ids)) for name, f in frames.items() if name != "users"}
    authors = kept["tweets"]["author_id"].drop_nulls()
    return {**kept, "users": frames["users"].filter(pl.col("user_id").is_in(authors))}


def _seen_again(frames: dict[str, pl.DataFrame], day: date) -> dict[str, pl.DataFrame]:
    """The same tweets and users as a later day's run delivers them: fetched later, other counts, text,
    hashtags (one fewer per tweet) and no URLs."""
    later = timedelta(days=(day - frames["tweets"]["dt"][0]).days)
    out = {}
    for name, frame in frames.items():
        changes = [pl.lit(day).alias("dt")]
        changes += [(pl.col(c) + later).alias(c) for c in ("fetched_at", "observed_at") if c in frame.columns]
        if "metric_date" in frame.columns:
            changes.append(pl.lit(day).alias("metric_date"))
        if "like_count" in frame.columns:
            changes.append((pl.col("like_count").fill_null(0) + 1000).alias("like_count"))
        if name == "tweets":
            changes.append(pl.concat_str(pl.col("text"), pl.lit(" (seen again)")).alias("text"))
        if name == "users":
            changes.append(pl.lit("renamed").alias("name"))
        out[name] = frame.with_columns(changes)
    out["tweet_hashtags"] = out["tweet_hashtags"].filter(
        pl.col("start_pos") != pl.col("start_pos").min().over("tweet_id")
    )
    out["tweet_urls"] = out["tweet_urls"].clear()
    return out


def test_rerun_of_a_day_removes_rows_it_no_longer_produces(target, day: date, sample_frames, curate_frames) -> None:
    warehouse, _ = target
    first = sample_frames(day, 30)
    assert all(first[name].height > 0 for name in TABLES)
    _load(target, curate_frames, day, first)

    # The re-run sees two thirds of the tweets, and no URL at all (a table with no rows that day).
    rerun = _only(first, first["tweets"]["tweet_id"].head(20).to_list())
    rerun["tweet_urls"] = rerun["tweet_urls"].clear()
    results = _load(target, curate_frames, day, rerun)

    for name in TABLES:
        assert _contents(warehouse, name) == _rows(rerun[name]), name
    gone = first["tweets"].height - 20
    assert results["tweets"].removed == gone and results["tweets"].updated == 20
    assert results["tweet_urls"].removed == first["tweet_urls"].height


def test_backfill_of_an_older_day_keeps_the_newer_copy(target, day: date, sample_frames, curate_frames) -> None:
    """The next day's run saw the same tweets and users again; backfilling the first day afterwards must not
    put its older copies back, nor mix its entities into the newer copy of a tweet."""
    warehouse, _ = target
    older = sample_frames(day, 30)
    newer = _seen_again(older, day + timedelta(days=1))
    _load(target, curate_frames, day + timedelta(days=1), newer)
    results = _load(target, curate_frames, day, older)

    for name in ("tweets", "users", "tweet_queries", *CHILDREN):
        assert _contents(warehouse, name) == _rows(newer[name]), name
    # Counts observed on each day are rows of their own.
    assert _contents(warehouse, "tweet_metrics_daily") == _rows(
        pl.concat([older["tweet_metrics_daily"], newer["tweet_metrics_daily"]])
    )
    assert results["tweets"].older == 30 and results["tweets"].new == 0 and results["tweets"].updated == 0
    assert results["tweet_hashtags"].older == older["tweet_hashtags"].height


def test_days_loaded_in_either_order_leave_the_same_rows(target, day: date, sample_frames, curate_frames) -> None:
    warehouse, _ = target
    older = sample_frames(day, 30)
    newer = _seen_again(_only(older, older["tweets"]["tweet_id"].head(15).to_list()), day + timedelta(days=1))
    _load(target, curate_frames, day, older)
    _load(target, curate_frames, day + timedelta(days=1), newer)
    forward = {name: _contents(warehouse, name) for name in TABLES}
    # Re-running the older day (a backfill) and then the newer one changes nothing.
    _load(target, curate_frames, day, older)
    assert {name: _contents(warehouse, name) for name in TABLES} == forward
    _load(target, curate_frames, day + timedelta(days=1), newer)
    assert {name: _contents(warehouse, name) for name in TABLES} == forward
    refetched = set(newer["tweets"]["tweet_id"])
    tweets = dict(warehouse.query(f'SELECT "tweet_id", "dt" FROM {qualified("tweets", warehouse.schema)}'))
    assert {t for t, d in tweets.items() if d == day + timedelta(days=1)} == refetched
    assert len(tweets) == 30


def _loaded_days(warehouse: Warehouse) -> dict[tuple[str, date], dict]:
    names = LOADED_DAYS.column_names
    rows = warehouse.query(f"SELECT {', '.join(quote_ident(c) for c in names)} "
                           f"FROM {qualified(LOADED_DAYS.name, warehouse.schema)}")
    return {(r[0], r[1]): dict(zip(names, r, strict=True)) for r in rows}


def test_a_load_records_its_day_and_raises_the_version_only_when_rows_change(
    target, day: date, sample_frames, curate_frames
) -> None:
    warehouse, bucket = target
    first = sample_frames(day, 30)
    files = curate_frames(bucket, day, first)
    for name in TABLES:
        warehouse.load_day(bucket, files[name])
    loaded = _loaded_days(warehouse)
    assert set(loaded) == {(name, day) for name in TABLES}
    for name in TABLES:
        record = loaded[(name, day)]
        assert (record["content"], record["version"], record["staged"]) == (files[name].content, 1, first[name].height)
        assert record["new"] == first[name].height and record["changed_at"] == record["loaded_at"]

    # The same rows curated and loaded again (a re-run that fetched nothing new): the same content and
    # versions, a later load time.
    _load(target, curate_frames, day, first)
    again = _loaded_days(warehouse)
    for key, record in loaded.items():
        assert again[key]["version"] == 1 and again[key]["content"] == record["content"], key
        assert again[key]["changed_at"] == record["changed_at"] and again[key]["loaded_at"] >= record["loaded_at"]
        assert again[key]["updated"] == record["staged"] and again[key]["new"] == 0

    # Two thirds of the tweets: every table of tweets changed (users too: fewer authors).
    kept = first["tweets"]["tweet_id"].head(20).to_list()
    _load(target, curate_frames, day, _only(first, kept))
    fewer = _loaded_days(warehouse)
    assert fewer[("tweets", day)]["version"] == 2 and fewer[("tweets", day)]["removed"] == 10
    assert fewer[("tweets", day)]["content"] != loaded[("tweets", day)]["content"]

    # The next day sees 15 of them again, newer: recorded for that day. Loading the first day's 20 once more
    # applies nothing of those 15 (kept newer) and leaves the other 5 as they were: its version stays.
    later = day + timedelta(days=1)
    _load(target, curate_frames, later, _seen_again(_only(first, kept[:15]), later))
    results = _load(target, curate_frames, day, _only(first, kept))
    after = _loaded_days(warehouse)
    assert after[("tweets", later)]["version"] == 1 and results["tweets"].older == 15
    assert after[("tweets", day)]["version"] == 2 and after[("tweets", day)]["older"] == 15
