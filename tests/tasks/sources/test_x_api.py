"""The X API source against the local X API v2 server (tests/xapi_server.py), spoken to by tweepy."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from pydantic import SecretStr

from tasks.lake.bucket import LocalBucket
from tasks.lake.land import PermanentSourceError, iter_raw_lines, landing_key, raw_prefix, read_landing
from tasks.sources.x_api import (
    BearerToken,
    Cursor,
    XApiAuthError,
    XApiRequestError,
    XApiSource,
    XApiUnavailable,
    bearer_token,
    read_state,
    timeline_target,
    write_state,
)
from tests.xapi_server import SEARCH_PATH, XApiServer

QUERY = "#DataEng"
FIX = "set X_BEARER_TOKEN to a valid token"


def source(server: XApiServer, now: datetime, token: str | None = None, **options) -> XApiSource:
    options = {"backoff_seconds": 0.05, "max_rate_limit_wait": 3.0, **options}
    return XApiSource(BearerToken(SecretStr(token or server.token), FIX), api_base_url=server.url,
                      clock=lambda: now, **options)


def noon_after(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)


def landed_ids(bucket: LocalBucket, prefix: str = "raw/x_api/") -> Counter[str]:
    ids: Counter[str] = Counter()
    for key in (k for k in bucket.list(prefix) if k.endswith(".jsonl.gz")):
        for line in iter_raw_lines(bucket.read(key)):
            ids.update(t["id"] for t in line["body"].get("data") or ())
    return ids


def tokens_answered(server: XApiServer, status: int = 200) -> Counter[str | None]:
    return Counter(r.params.get("next_token") for r in server.requests_to(SEARCH_PATH) if r.status == status)


def test_a_day_lands_every_page_once_and_sets_the_watermark(x_api_server, local_bucket, day) -> None:
    published = x_api_server.publish(QUERY, day, 250)
    landed = source(x_api_server, noon_after(day)).land(local_bucket, QUERY, day, pages_per_file=2)

    assert (landed.pages, landed.tweets) == (3, 250)
    assert landed.api_errors == 1  # the sample's author the API could not expand, kept in the page
    assert landed_ids(local_bucket) == Counter({i: 1 for i in published})
    first = x_api_server.log[0]
    assert first.authorized and first.params["max_results"] == "100"
    assert first.params["start_time"] == f"{day}T00:00:00Z" and first.params["end_time"] == f"{day + timedelta(days=1)}T00:00:00Z"
    assert "public_metrics" in first.params["tweet.fields"] and "author_id" in first.params["expansions"]
    state = read_state(local_bucket, QUERY)
    assert state.since_id == max(published, key=int) and state.cursors == {}
    pages = [line for k in landed.keys for line in iter_raw_lines(local_bucket.read(k))]
    assert sum(len(p["body"].get("errors") or ()) for p in pages) == 1
    assert pages[1]["request"]["params"]["next_token"] == x_api_server.log[1].params["next_token"]


def test_the_next_run_fetches_only_newer_posts_and_keeps_earlier_pages(x_api_server, local_bucket, day) -> None:
    first = x_api_server.publish(QUERY, day, 120)
    source(x_api_server, noon_after(day)).land(local_bucket, QUERY, day)
    watermark = read_state(local_bucket, QUERY).since_id
    later = x_api_server.publish(QUERY, day + timedelta(days=1), 30)
    x_api_server.log.clear()

    landed = source(x_api_server, noon_after(day + timedelta(days=1))).land(local_bucket, QUERY, day + timedelta(days=1))

    assert landed.tweets == 30
    assert [r.params.get("since_id") for r in x_api_server.log] == [watermark]
    assert "start_time" not in x_api_server.log[0].params
    assert landed_ids(local_bucket) == Counter({i: 1 for i in first | later})
    assert read_state(local_bucket, QUERY).since_id == max(later, key=int)

    # A third run the same day: nothing new, nothing deleted.
    keys = set(local_bucket.list("raw/"))
    again = source(x_api_server, noon_after(day + timedelta(days=1))).land(local_bucket, QUERY, day + timedelta(days=1))
    assert again.tweets == 0 and keys <= set(local_bucket.list("raw/"))


def test_429_waits_for_the_reset_and_asks_for_the_same_page(x_api_server, local_bucket, day, caplog) -> None:
    published = x_api_server.publish(QUERY, day, 250)
    x_api_server.fail(429, on_request=2, reset_in=1)
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    landed = source(x_api_server, noon_after(day)).land(local_bucket, QUERY, day)

    assert time.monotonic() - started >= 0.9
    statuses = [r.status for r in x_api_server.log]
    assert statuses == [200, 429, 200, 200]
    assert x_api_server.log[1].params["next_token"] == x_api_server.log[2].params["next_token"]
    assert landed.tweets == 250 and landed_ids(local_bucket) == Counter({i: 1 for i in published})
    assert "rate limited" in caplog.text and "x-rate-limit-reset" in caplog.text


def test_server_errors_are_retried_without_asking_twice_for_a_page(x_api_server, local_bucket, day) -> None:
    published = x_api_server.publish(QUERY, day, 250)
    x_api_server.fail(503, on_request=2)
    x_api_server.fail(500, on_request=3)
    landed = source(x_api_server, noon_after(day)).land(local_bucket, QUERY, day)

    assert [r.status for r in x_api_server.log] == [200, 503, 500, 200, 200]
    assert set(tokens_answered(x_api_server).values()) == {1}
    assert landed.tweets == 250 and landed_ids(local_bucket) == Counter({i: 1 for i in published})


def test_a_run_that_runs_out_of_retries_lands_its_pages_and_the_next_attempt_resumes(
    x_api_server, local_bucket, day
) -> None:
    published = x_api_server.publish(QUERY, day, 350)
    for n in (3, 4):
        x_api_server.fail(502, on_request=n)
    with pytest.raises(XApiUnavailable, match="502"):
        source(x_api_server, noon_after(day), max_attempts=2).land(local_bucket, QUERY, day, pages_per_file=50)
    state = read_state(local_bucket, QUERY)
    cursor = state.cursors[str(day)]
    assert cursor.next_token and state.since_id is None
    assert sum(landed_ids(local_bucket).values()) == 200  # the two pages fetched before the failure

    source(x_api_server, noon_after(day), max_attempts=2).land(local_bucket, QUERY, day)

    assert x_api_server.log[4].params["next_token"] == cursor.next_token  # resumed, not restarted
    assert set(tokens_answered(x_api_server).values()) == {1}
    assert landed_ids(local_bucket) == Counter({i: 1 for i in published})
    after = read_state(local_bucket, QUERY)
    assert after.cursors == {} and after.since_id == max(published, key=int)


def test_a_later_days_run_neither_resumes_an_unfinished_days_cursor_nor_lands_its_pages(
    x_api_server, local_bucket, day
) -> None:
    later = day + timedelta(days=1)
    first = x_api_server.publish(QUERY, day, 350)
    second = x_api_server.publish(QUERY, later, 120)
    for n in (3, 4):
        x_api_server.fail(502, on_request=n)
    with pytest.raises(XApiUnavailable):
        source(x_api_server, noon_after(day), max_attempts=2).land(local_bucket, QUERY, day)
    assert sum(landed_ids(local_bucket).values()) == 200

    source(x_api_server, noon_after(later)).land(local_bucket, QUERY, later)

    assert landed_ids(local_bucket, raw_prefix("x_api", QUERY, later)) == Counter({i: 1 for i in second})
    assert read_state(local_bucket, QUERY).since_id == max(second, key=int)

    # A re-run (or catch-up) of the first day finishes that day's own pagination, under that day.
    source(x_api_server, noon_after(later)).land(local_bucket, QUERY, day)

    assert landed_ids(local_bucket, raw_prefix("x_api", QUERY, day)) == Counter({i: 1 for i in first})
    after = read_state(local_bucket, QUERY)
    assert after.cursors == {} and after.since_id == max(second, key=int)


def test_an_expired_cursor_fetches_the_days_bounds_again(x_api_server, local_bucket, day, caplog) -> None:
    published = x_api_server.publish(QUERY, day, 150)
    state = read_state(local_bucket, QUERY)
    state.cursors[str(day)] = Cursor(tag="start-x", bounds={"start_time": f"{day}T00:00:00Z"}, next_token="expired!",
                                     batches=3)
    write_state(local_bucket, state)
    caplog.set_level(logging.INFO)

    landed = source(x_api_server, noon_after(day)).land(local_bucket, QUERY, day)

    assert [r.status for r in x_api_server.log] == [400, 200, 200]
    assert "refused the saved cursor" in caplog.text
    assert landed.tweets == 150 and read_state(local_bucket, QUERY).since_id == max(published, key=int)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_fails_at_once_naming_the_fix_and_never_the_token(
    x_api_server, local_bucket, day, caplog, status
) -> None:
    x_api_server.publish(QUERY, day, 50)
    caplog.set_level(logging.DEBUG)  # tweepy logs request headers, the bearer token among them, at DEBUG
    if status == 403:
        x_api_server.fail(403, on_request=1)
    wrong = "AAAA-not-the-right-token-0123456789" if status == 401 else x_api_server.token
    started = time.monotonic()
    with pytest.raises(XApiAuthError) as failure:
        source(x_api_server, noon_after(day), token=wrong).land(local_bucket, QUERY, day)

    assert time.monotonic() - started < 2
    assert str(status) in str(failure.value) and FIX in str(failure.value)
    assert isinstance(failure.value, PermanentSourceError)
    assert len(x_api_server.log) == 1
    assert "Bearer" in caplog.text  # tweepy did log its headers: masked
    assert wrong not in caplog.text and wrong not in str(failure.value)


def test_a_bad_query_fails_with_the_apis_own_message(x_api_server, local_bucket, day) -> None:
    with pytest.raises(XApiRequestError, match="Ambiguous use of parentheses"):
        source(x_api_server, noon_after(day)).land(local_bucket, "(redshift OR s3", day)
    assert len(x_api_server.log) == 1


def test_a_malformed_body_lands_under_errors_and_is_asked_for_again(x_api_server, local_bucket, day) -> None:
    published = x_api_server.publish(QUERY, day, 250)
    x_api_server.fail(200, on_request=2)
    landed = source(x_api_server, noon_after(day)).land(local_bucket, QUERY, day)

    assert landed.tweets == 100 and len(landed.error_keys) == 1
    kept = orjson.loads(local_bucket.read(landed.error_keys[0]))
    assert kept["raw_text"] == x_api_server.script[2].body.decode()
    assert kept["request"]["params"]["next_token"] == x_api_server.log[1].params["next_token"]
    state = read_state(local_bucket, QUERY)
    assert state.since_id is None
    assert state.cursors[str(day)].next_token == x_api_server.log[1].params["next_token"]

    record = read_landing(local_bucket, landing_key("x_api", QUERY, day))
    assert not record.complete and "not JSON" in record.reason and record.error_keys == landed.error_keys

    source(x_api_server, noon_after(day)).land(local_bucket, QUERY, day)
    assert landed_ids(local_bucket) == Counter({i: 1 for i in published})
    assert read_state(local_bucket, QUERY).since_id == max(published, key=int)
    record = read_landing(local_bucket, landing_key("x_api", QUERY, day))
    assert record.complete and record.reason is None and (record.pages, record.tweets) == (4, 250)
    assert set(record.keys) == {k for k in local_bucket.list("raw/") if k.endswith(".jsonl.gz")}


def test_timelines_resolve_the_username_once(x_api_server, local_bucket, day) -> None:
    first = x_api_server.publish_timeline("ada_builds", day, 120)
    target = timeline_target("@ada_builds")
    landed = source(x_api_server, noon_after(day)).land(local_bucket, target, day)
    later = x_api_server.publish_timeline("ada_builds", day + timedelta(days=1), 20)
    again = source(x_api_server, noon_after(day + timedelta(days=1))).land(local_bucket, target, day + timedelta(days=1))

    user_id = x_api_server.accounts["ada_builds"]
    assert [r.path for r in x_api_server.requests_to("/2/users/by/")] == ["/2/users/by/username/ada_builds"]
    timeline = x_api_server.requests_to(f"/2/users/{user_id}/tweets")
    assert len(timeline) == 3 and timeline[1].params.get("pagination_token")
    assert timeline[2].params["since_id"] == max(first, key=int)
    assert (landed.tweets, again.tweets) == (120, 20)
    assert landed_ids(local_bucket) == Counter({i: 1 for i in first | later})


def test_an_unknown_account_is_a_clear_error(x_api_server, local_bucket, day) -> None:
    with pytest.raises(XApiRequestError, match="@nobody_here was not found"):
        source(x_api_server, noon_after(day)).land(local_bucket, timeline_target("nobody_here"), day)


def test_pages_honour_the_days_bounds(x_api_server, day) -> None:
    inside = x_api_server.publish(QUERY, day, 150)
    x_api_server.publish(QUERY, day - timedelta(days=1), 40)
    x_api_server.publish(QUERY, day + timedelta(days=1), 40)
    pages = list(source(x_api_server, noon_after(day + timedelta(days=1))).pages(QUERY, day))
    assert {t["id"] for p in pages for t in p.body.get("data") or ()} == inside
    assert [p.request["params"].get("next_token") is None for p in pages] == [True, False]


def test_the_first_run_starts_at_the_lookback(x_api_server, local_bucket, day) -> None:
    now = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
    source(x_api_server, now, lookback=timedelta(hours=3)).land(local_bucket, QUERY, day)
    assert x_api_server.log[0].params["start_time"] == f"{day}T07:00:00Z"
    assert "end_time" not in x_api_server.log[0].params  # today: the API's own "now" bounds it
    with pytest.raises(ValueError, match="168 hours"):
        source(x_api_server, now, lookback=timedelta(days=8))


def test_the_token_comes_from_the_environment_and_its_absence_says_what_to_set(monkeypatch) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", "env-token-value")
    token = bearer_token(None)
    assert token.value.get_secret_value() == "env-token-value" and "env-token-value" not in repr(token)
    monkeypatch.delenv("X_BEARER_TOKEN")
    with pytest.raises(PermanentSourceError, match="set X_BEARER_TOKEN"):
        bearer_token(None)
