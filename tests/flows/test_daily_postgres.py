"""Acceptance: the daily flow with saved blocks, moto's S3 as the bucket and PostgreSQL as the warehouse."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import psycopg2
from pydantic import SecretStr

from blocks.warehouse import Warehouse
from flows.daily import daily
from flows.settings import PipelineSettings
from tasks.analytics.analyze import view_selects
from tasks.schema import TABLES
from tests.prefect_api import poll, send_logs

SECRET = "pg-password-never-logged"


def test_daily_loads_every_table_into_postgresql_and_reruns_identically(
    prefect_server, s3_bucket_block, pg_server: str, tmp_path: Path, day: date
) -> None:
    name = f"flow-{uuid.uuid4().hex[:8]}"
    schema = f"daily_{uuid.uuid4().hex[:8]}"
    s3_bucket_block.save(name)
    Warehouse(kind="postgresql", url=pg_server, password=SecretStr(SECRET), db_schema=schema).save(name)
    params = {"day": day, "settings": PipelineSettings(
        queries=["#DataEng", "prefect polars"], sample_tweets=120, bucket=f"s3-bucket/{name}",
        warehouse=f"x-pipeline-warehouse/{name}", local_root=str(tmp_path), allow_sample_data=True)}

    first = daily(**params)
    counts_1 = _counts(pg_server, schema)
    second = daily(**params)
    counts_2 = _counts(pg_server, schema)

    assert all(counts_1[t] > 0 for t in TABLES), counts_1
    assert counts_1["tweets"] == 240 and counts_2 == counts_1
    assert {t: r["total"] for t, r in first.tables.items()} == counts_1
    assert second.tables["tweets"]["new"] == 0 and second.tables["tweets"]["updated"] == 240
    assert not (tmp_path / "warehouse.duckdb").exists()  # nothing went to the embedded default
    send_logs()
    logs = poll(lambda client: client.read_logs(), lambda found: any("tweets: staged 240" in x.message
                                                                      for x in found))
    messages = [log.message for log in logs]
    assert any("tweets: staged 240" in m for m in messages)
    assert not any(SECRET in m for m in messages)
    views = _view_rows(pg_server, schema)
    assert set(views) == set(view_selects(None)) and all(n > 0 for n in views.values()), views


def _counts(uri: str, schema: str, names: Iterable[str] = TABLES) -> dict[str, int]:
    with psycopg2.connect(uri) as con, con.cursor() as cur:
        counts = {}
        for name in names:
            cur.execute(f'SELECT COUNT(*) FROM "{schema}"."{name}"')
            counts[name] = cur.fetchone()[0]
    con.close()
    return counts


def _view_rows(uri: str, schema: str) -> dict[str, int]:
    """Rows in every `dashboard_*` BI view the run created in the PostgreSQL schema."""
    with psycopg2.connect(uri) as con, con.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.views WHERE table_schema = %s", (schema,))
        names = [r[0] for r in cur.fetchall() if r[0].startswith("dashboard_")]
    con.close()
    return _counts(uri, schema, names)
