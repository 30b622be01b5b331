"""The daily flow with `source="x_api"` against the local X API v2 server, on a real Prefect server."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import orjson
import pytest
from prefect.blocks.system import Secret

from flows.daily import daily
from flows.settings import PipelineSettings, utc_today
from tasks.schema import TABLES
from tasks.sources.x_api import XApiAuthError
from tests.xapi_server import SEARCH_PATH

QUERIES = ["#DataEng", "prefect polars", "(redshift OR s3) lang:en"]


def warehouse_rows(root: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()
    finally:
        con.close()


def tweet_ids(root: Path) -> list[str]:
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        return [str(r[0]) for r in con.execute("SELECT tweet_id FROM tweets").fetchall()]
    finally:
        con.close()


def test_three_queries_through_a_429_and_two_5xx_then_only_newer_posts(
    prefect_server, x_api_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", x_api_server.token)
    yesterday = utc_today() - timedelta(days=1)
    published = {q: x_api_server.publish(q, yesterday, 250) for q in QUERIES}
    x_api_server.fail(503, on_request=2)   # the first query's second page
    x_api_server.fail(429, on_request=6)   # the second query, mid-way through its pages
    x_api_server.fail(502, on_request=10)  # the third query's second page
    options = {"settings": PipelineSettings(queries=QUERIES, source="x_api", x_api_base_url=x_api_server.url,
                                            local_root=str(tmp_path))}

    first = daily(day=yesterday, **options)

    assert sorted(r.status for r in x_api_server.log) == [200] * 9 + [429, 502, 503]
    ids = tweet_ids(tmp_path)
    everything = set().union(*published.values())
    assert len(ids) == len(set(ids)) == len(everything) == 750 and set(ids) == everything
    assert first.tweets_fetched == 750 and first.api_errors == 3

    newer = {q: x_api_server.publish(q, utc_today(), 40) for q in QUERIES}
    x_api_server.log.clear()
    second = daily(day=utc_today(), **options)

    searches = x_api_server.requests_to(SEARCH_PATH)
    assert {r.params["query"]: r.params.get("since_id") for r in searches} == {
        q: max(published[q], key=int) for q in QUERIES
    }
    assert all("start_time" not in r.params for r in searches)
    assert second.tweets_fetched == 120 and second.tables["tweets"]["new"] == 120
    ids = tweet_ids(tmp_path)
    assert len(ids) == len(set(ids)) == 870 and set(ids) == everything.union(*newer.values())


def test_a_refused_token_fails_the_flow_at_once_and_stays_out_of_the_logs(
    prefect_server, x_api_server, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    wrong = "test-rejected-bearer-token-7f3a9c"
    Secret(value=wrong).save("x-bearer-token-rejected", overwrite=True)
    x_api_server.publish(QUERIES[0], utc_today(), 50)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(XApiAuthError) as failure:
        daily(day=utc_today(), settings=PipelineSettings(queries=QUERIES, source="x_api", x_token="x-bearer-token-rejected", x_api_base_url=x_api_server.url, local_root=str(tmp_path)))
    elapsed = time.monotonic() - started

    with capfd.disabled():
        print(f"\n401 failed the flow in {elapsed:.2f} s")  # a figure, not asserted: a busy machine took 8 s
    assert "401" in str(failure.value) and "secret/x-bearer-token-rejected" in str(failure.value)
    assert len(x_api_server.log) == 1  # at once: no retry (by the source or the task), no other query
    out, err = capfd.readouterr()
    logs = caplog.text + out + err
    assert "secret/x-bearer-token-rejected" in logs  # the failure itself was logged...
    assert wrong not in logs  # ...and the token never was


def test_replaying_an_x_api_day_gives_the_same_rows(
    prefect_server, x_api_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", x_api_server.token)
    yesterday = utc_today() - timedelta(days=1)
    for q in QUERIES[:2]:
        x_api_server.publish(q, yesterday, 150)
    daily(day=yesterday, settings=PipelineSettings(queries=QUERIES[:2], source="x_api", x_api_base_url=x_api_server.url, local_root=str(tmp_path)))
    original = {t: warehouse_rows(tmp_path, t) for t in TABLES}
    requests_made = len(x_api_server.log)
    (tmp_path / "warehouse.duckdb").unlink()

    daily(day=yesterday, settings=PipelineSettings(source="replay", local_root=str(tmp_path)))

    assert len(x_api_server.log) == requests_made  # no API call
    assert original["tweets"] and {t: warehouse_rows(tmp_path, t) for t in TABLES} == original


def test_tweets_landed_by_a_failed_attempt_are_counted_after_the_retry(
    prefect_server, x_api_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", x_api_server.token)
    yesterday = utc_today() - timedelta(days=1)
    x_api_server.publish(QUERIES[0], yesterday, 250)
    for n in range(2, 7):  # the second page fails five times: the first attempt lands page 1, then gives up
        x_api_server.fail(503, on_request=n)

    summary = daily(day=yesterday, settings=PipelineSettings(queries=QUERIES[:1], source="x_api", x_api_base_url=x_api_server.url, local_root=str(tmp_path)))

    # The failed attempt landed page 1; the task's retry resumed on page 2.
    assert [r.status for r in x_api_server.log] == [200] + [503] * 5 + [200] * 2
    assert len(tweet_ids(tmp_path)) == 250
    assert summary.tweets_fetched == 250 and summary.pages == 3


def test_a_malformed_page_fails_the_day_without_a_success_summary_and_a_rerun_completes_it(
    prefect_server, x_api_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", x_api_server.token)
    yesterday = utc_today() - timedelta(days=1)
    published = x_api_server.publish(QUERIES[0], yesterday, 250)
    x_api_server.fail(200, on_request=2)  # the second page's body is cut off: not JSON
    options = {"day": yesterday, "settings": PipelineSettings(queries=QUERIES[:1], source="x_api",
                                                              x_api_base_url=x_api_server.url,
                                                              local_root=str(tmp_path))}
    lake = tmp_path / "lake" / "runs" / f"dt={yesterday}"

    with pytest.raises(RuntimeError, match=f"{yesterday} is not complete.*#DataEng.*not JSON"):
        daily(**options)

    assert not (lake / "summary.json").exists()
    [missing] = orjson.loads((lake / "incomplete.json").read_bytes())["incomplete_queries"]
    assert missing["query"] == QUERIES[0] and missing["source"] == "x_api" and "not JSON" in missing["reason"]

    summary = daily(**options)  # what catch-up does next: the day again, from the saved cursor

    assert (lake / "summary.json").exists() and not (lake / "incomplete.json").exists()
    assert set(tweet_ids(tmp_path)) == published
    # The malformed body stays under errors/ as received (counted: what is in the bucket for the day).
    assert summary.malformed_pages == 1
