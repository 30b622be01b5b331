"""The PostgreSQL warehouse on a real server: COPY FROM STDIN of the curated CSV, idempotent re-runs,
and all-or-nothing merges."""

from __future__ import annotations

import gzip
import uuid
from datetime import date

import polars as pl
import psycopg2
import pytest
from pydantic import SecretStr

from tasks.lake.bucket import LocalBucket
from tasks.lake.curate import DaySpool, write_tables
from tasks.lake.land import FetchedPage, encode_pages
from tasks.lake.normalize import normalize_raw_file
from tasks.schema import TABLES
from tasks.sources.sample import generate_pages
from tasks.warehouse import WarehouseError, warehouse_from_block
from tasks.warehouse.postgres import PostgresWarehouse, engine_url

HARD = 'He said "hi", then, well,\nleft 😀 𠜎 — مرحبا بالعالم, "quoted, twice" ""'


@pytest.fixture
def postgres(pg_server: str):
    """A PostgresWarehouse in a fresh schema of the test server."""
    warehouse = PostgresWarehouse(engine_url(pg_server, None, "postgresql+psycopg2"), f"wh_{uuid.uuid4().hex[:10]}")
    warehouse.ensure_tables()
    yield warehouse
    warehouse.close()


def _contents(warehouse: PostgresWarehouse, table: str) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in TABLES[table].column_names)
    return warehouse.query(f'SELECT {cols} FROM "{warehouse.schema}"."{table}" ORDER BY 1, 2, 3')


def _hard(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    row = pl.int_range(pl.len())
    tweets = frames["tweets"].with_columns(
        pl.when(row == 0).then(pl.lit(HARD)).otherwise(pl.col("text")).alias("text"),
        pl.when(row == 1).then(pl.lit("")).when(row == 2).then(pl.lit(None)).otherwise(pl.col("lang")).alias("lang"),
    )
    return {**frames, "tweets": tweets}


def test_hard_csv_loads_through_copy_from_stdin(
    postgres: PostgresWarehouse, local_bucket: LocalBucket, day: date, sample_frames, curate_frames
) -> None:
    frames = _hard(sample_frames(day, 90))
    files = curate_frames(local_bucket, day, frames, parts=3)
    results = {name: postgres.load_day(local_bucket, f) for name, f in files.items()}
    assert {n: r.total for n, r in results.items()} == {n: f.rows for n, f in files.items()}

    loaded = postgres.query(f'SELECT tweet_id, text, lang FROM "{postgres.schema}".tweets')
    expected = frames["tweets"].select("tweet_id", "text", "lang").rows()
    assert sorted(loaded) == sorted(expected)
    by_id = {r[0]: r for r in loaded}
    first, second, third = frames["tweets"]["tweet_id"][:3]
    assert by_id[first][1] == HARD
    assert by_id[second][2] == "" and by_id[third][2] is None  # empty string and null stay apart
    created = postgres.query(f'SELECT MAX(created_at) FROM "{postgres.schema}".tweets')[0][0]
    assert created == frames["tweets"]["created_at"].max()



def test_a_nul_character_in_a_post_no_longer_fails_the_day(
    postgres: PostgresWarehouse, local_bucket: LocalBucket, day: date
) -> None:
    """PostgreSQL refuses NUL in text: one post with `\\u0000` failed the whole day's load. Normalize removes
    NUL (counted), so the day loads with every tweet."""
    pages = list(generate_pages(day, "q", 30))
    pages[0]["data"][0]["text"] = "before\x00after"
    request = {"source": "sample", "query": "q", "fetched_at": f"{day.isoformat()}T23:59:59.999Z"}
    frames, stats = normalize_raw_file(encode_pages(FetchedPage(request=request, body=p) for p in pages), day)
    spool = DaySpool(day, 1)
    try:
        spool.add(frames)
        files = write_tables(local_bucket, spool, TABLES)
    finally:
        spool.cleanup()
    assert postgres.load_day(local_bucket, files["tweets"]).total == 30
    tweet_id = pages[0]["data"][0]["id"]
    assert postgres.query(f'SELECT text FROM "{postgres.schema}".tweets WHERE tweet_id = :t',
                          {"t": int(tweet_id)}) == [("beforeafter",)]
    assert stats.cleaned == {"tweets.text: NUL characters removed": 1}

def test_rerun_of_the_same_day_leaves_the_same_rows(
    postgres: PostgresWarehouse, local_bucket: LocalBucket, day: date, sample_frames, curate_frames
) -> None:
    files = curate_frames(local_bucket, day, _hard(sample_frames(day, 60)), parts=2)
    for f in files.values():
        postgres.load_day(local_bucket, f)
    before = {name: _contents(postgres, name) for name in TABLES}
    again = {name: postgres.load_day(local_bucket, f) for name, f in files.items()}
    assert {name: _contents(postgres, name) for name in TABLES} == before
    assert all(r.new == 0 and r.updated == r.staged for r in again.values())


def test_failure_in_the_middle_of_a_merge_leaves_the_target_as_it_was(
    postgres: PostgresWarehouse, local_bucket: LocalBucket, day: date, sample_frames, curate_frames
) -> None:
    frames = sample_frames(day, 40)
    postgres.load_day(local_bucket, curate_frames(local_bucket, day, frames)["tweets"])
    before = _contents(postgres, "tweets")
    # The next run updates every tweet; one row breaks a constraint only the INSERT checks, so the
    # DELETE of the old versions has already run when the merge fails.
    postgres.execute_script([f'ALTER TABLE "{postgres.schema}".tweets ADD CONSTRAINT no_xx CHECK (lang <> \'xx\')'])
    row = pl.int_range(pl.len())
    changed = frames["tweets"].with_columns(
        pl.concat_str(pl.col("text"), pl.lit(" (edited)")).alias("text"),
        pl.when(row == 7).then(pl.lit("xx")).otherwise(pl.col("lang")).alias("lang"),
    )
    files = curate_frames(local_bucket, day, {**frames, "tweets": changed})
    with pytest.raises(WarehouseError, match="no_xx"):
        postgres.load_day(local_bucket, files["tweets"])
    assert _contents(postgres, "tweets") == before


def test_bad_csv_names_the_file_and_commits_nothing(
    postgres: PostgresWarehouse, local_bucket: LocalBucket, day: date, sample_frames, curate_frames
) -> None:
    frames = sample_frames(day, 40)
    files = curate_frames(local_bucket, day, frames, parts=2)
    key = files["tweets"].csv[1].key
    text = gzip.decompress(local_bucket.read(key)).decode()
    header, rest = text.split("\n", 1)
    local_bucket.write(key, gzip.compress((header + "\n" + "not-a-number" + rest[rest.index(","):]).encode()))
    with pytest.raises(WarehouseError) as caught:
        postgres.load_day(local_bucket, files["tweets"])
    assert local_bucket.url(key) in str(caught.value) and "not-a-number" in str(caught.value)
    assert postgres.row_counts()["tweets"] == 0


def test_a_part_with_other_rows_than_listed_is_refused(
    postgres: PostgresWarehouse, local_bucket: LocalBucket, day: date, sample_frames, curate_frames
) -> None:
    files = curate_frames(local_bucket, day, sample_frames(day, 30))["tweets"]
    files.part_rows[0] += 1
    with pytest.raises(WarehouseError, match="COPY loaded 30 rows, the manifest lists 31"):
        postgres.load_day(local_bucket, files)
    assert postgres.row_counts()["tweets"] == 0


def test_block_opens_postgresql_without_showing_the_password(pg_server: str) -> None:
    from blocks.warehouse import Warehouse as WarehouseBlock

    block = WarehouseBlock(kind="postgresql", url=pg_server, password=SecretStr("s3cr3t-pw"), db_schema="analytics")
    warehouse = warehouse_from_block(block)
    try:
        assert isinstance(warehouse, PostgresWarehouse) and warehouse.schema == "analytics"
        assert warehouse.engine.url.drivername == "postgresql+psycopg2"
        assert "s3cr3t-pw" not in warehouse.describe() and "s3cr3t-pw" not in repr(block)
        assert warehouse.query("SELECT 1") == [(1,)]  # the socket server trusts local users
    finally:
        warehouse.close()


def test_a_held_lock_fails_the_load_fast_with_a_clear_error(
    pg_server: str, local_bucket: LocalBucket, day: date, sample_frames, curate_frames
) -> None:
    """Another session holds a lock on `tweets`: the load gives up after the block's lock timeout, naming the
    table and the timeout, instead of waiting for as long as the lock is held."""
    from blocks.warehouse import Warehouse as WarehouseBlock

    block = WarehouseBlock(kind="postgresql", url=pg_server, db_schema=f"wh_{uuid.uuid4().hex[:10]}",
                           lock_timeout_seconds=1)
    warehouse = warehouse_from_block(block)
    holder = psycopg2.connect(pg_server)
    try:
        warehouse.ensure_tables()
        files = curate_frames(local_bucket, day, sample_frames(day, 20))["tweets"]
        with holder.cursor() as cur:
            # The server ends the holder's transaction after 30 s, so a load that waits for the lock fails
            # this test (it then loads) rather than hanging it.
            cur.execute("SET idle_in_transaction_session_timeout = '30s'")
            cur.execute(f'LOCK TABLE "{block.db_schema}"."tweets" IN ACCESS EXCLUSIVE MODE')
        with pytest.raises(WarehouseError, match=r"tweets .*lock_timeout_seconds = 1") as caught:
            warehouse.load_day(local_bucket, files)
        assert "another session" in str(caught.value)
        holder.rollback()
        assert warehouse.row_counts()["tweets"] == 0
    finally:
        holder.close()
        warehouse.close()


def test_sessions_set_the_block_s_timeouts(pg_server: str) -> None:
    from blocks.warehouse import Warehouse as WarehouseBlock

    block = WarehouseBlock(kind="postgresql", url=pg_server, lock_timeout_seconds=2.5, statement_timeout_seconds=90)
    warehouse = warehouse_from_block(block)
    try:
        assert warehouse.query("SHOW lock_timeout") == [("2500ms",)]
        assert warehouse.query("SHOW statement_timeout") == [("90s",)]
    finally:
        warehouse.close()
