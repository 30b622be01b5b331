"""Metrics SQL on DuckDB and on a real PostgreSQL, checked against numbers worked out by hand."""

from __future__ import annotations

import gzip
import io
import math
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tasks.analytics import analyze
from tasks.analytics.analyze import analyze_day, score_sentiment, view_selects
from tasks.lake.curate import csv_bytes
from tasks.lake.land import FetchedPage, encode_pages
from tasks.lake.normalize import deduplicate, normalize_raw_file
from tasks.schema import METRIC_TABLES, SCORE_TABLES, TABLES, qualified, quote_ident
from tasks.sources.sample import generate_pages
from tasks.warehouse.base import DuckDBWarehouse, Warehouse
from tasks.warehouse.postgres import PostgresWarehouse, engine_url

DAY = date(2026, 11, 24)
PREVIOUS = DAY - timedelta(days=1)
SESSION_TIME_ZONE = "Asia/Kolkata"


def _load(warehouse: Warehouse, frames: dict[str, pl.DataFrame]) -> None:
    for name, frame in frames.items():
        frame = TABLES[name].conform(frame)
        if isinstance(warehouse, DuckDBWarehouse):
            warehouse.con.register("_frame", frame.to_arrow())
            warehouse.con.execute(f"INSERT INTO {quote_ident(name)} SELECT * FROM _frame")
            warehouse.con.unregister("_frame")
        else:  # the rows go in through PostgreSQL's COPY, as the pipeline's PostgreSQL load does
            copy = f"COPY {qualified(name, warehouse.schema)} FROM STDIN (FORMAT csv, HEADER true)"
            with warehouse.engine.begin() as conn, conn.connection.dbapi_connection.cursor() as cur:
                cur.copy_expert(copy, io.BytesIO(gzip.decompress(csv_bytes(frame, TABLES[name]))))


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    if request.param == "duckdb":
        wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
        wh.con.execute(f"SET TimeZone = '{SESSION_TIME_ZONE}'")
        wh.ensure_tables()
    else:
        # A session time zone with a half-hour offset: hours must still be UTC hours.
        url = engine_url(request.getfixturevalue("pg_server"), None, "postgresql+psycopg2")
        url = url.update_query_dict({"options": f"-c TimeZone={SESSION_TIME_ZONE}"})
        wh = PostgresWarehouse(url, schema=f"analyze_{uuid.uuid4().hex[:10]}")
        wh.ensure_tables()
    try:
        yield wh
    finally:
        wh.close()


def _rows(warehouse: Warehouse, table: str, day: date = DAY, order: str = "") -> list[tuple]:
    names = [c for c in METRIC_TABLES[table].column_names if c != "dt"]
    cols = ", ".join(quote_ident(c) for c in names)
    sql = f"SELECT {cols} FROM {qualified(table, warehouse.schema)} WHERE dt = DATE '{day}'"
    return warehouse.query(sql + (f" ORDER BY {order}" if order else ""))


def _scores(warehouse: Warehouse) -> dict[int, tuple]:
    """tweet id -> (label, compound, positive, neutral, negative, scored_dt) of every stored score."""
    names = SCORE_TABLES["tweet_sentiment"].column_names
    rows = warehouse.query(f"SELECT {', '.join(quote_ident(c) for c in names)} "
                           f"FROM {qualified('tweet_sentiment', warehouse.schema)}")
    return {r[0]: r[1:] for r in rows}


def _at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def _tweet(tid: int, author: int | None, lang: str | None, text: str, created: datetime | None,
           counts: tuple | None, dt: date = DAY) -> dict:
    likes, rts, replies, quotes = counts or (None, None, None, None)
    return {"tweet_id": tid, "author_id": author, "lang": lang, "text": text, "created_at": created,
            "like_count": likes, "retweet_count": rts, "reply_count": replies, "quote_count": quotes,
            "fetched_at": _at(23, day=dt), "dt": dt}


def _frames(rows: dict[str, list[dict]]) -> dict[str, pl.DataFrame]:
    return {name: TABLES[name].conform(pl.DataFrame(r, infer_schema_length=None)) for name, r in rows.items()}


def hand_built_day() -> dict[str, pl.DataFrame]:
    """Four tweets on DAY (one a day earlier), small enough that every metric is worked out by hand
    in `test_metrics_of_a_hand_built_day`."""
    def span(tid: int, start: int, **kw: Any) -> dict:
        return {"tweet_id": tid, "start_pos": start, "end_pos": start + 5, "dt": DAY, **kw}

    def observed(tid: int, day: date, counts: tuple | None) -> dict:
        likes, rts, replies, quotes = counts or (None, None, None, None)
        return {"tweet_id": tid, "metric_date": day, "like_count": likes, "retweet_count": rts,
                "reply_count": replies, "quote_count": quotes, "observed_at": _at(23, day=day), "dt": day}

    def matched(tid: int, query: str, dt: date = DAY) -> dict:
        return {"tweet_id": tid, "query": query, "source": "sample", "fetched_at": _at(23, day=dt), "dt": dt}

    return _frames({
        "tweets": [
            _tweet(1, 101, "en", "I love this pipeline, it is great! #DataEng #Polars", _at(9, 15), (10, 2, 1, 0)),
            _tweet(2, 101, "en", "This outage is terrible and awful #dataeng", _at(9, 40), (0, 0, 3, 1)),
            _tweet(3, 102, "es", "Me encanta #DataEng @Ana", _at(10, 5), (5, 0, 0, 0)),
            _tweet(4, 103, None, "no optional fields", None, None),
            _tweet(5, 102, "en", "yesterday was wonderful", _at(8, day=PREVIOUS), (100, 0, 0, 0), dt=PREVIOUS),
        ],
        "users": [
            {"user_id": 101, "username": "ada", "name": "Ada", "followers_count": 50, "fetched_at": _at(23), "dt": DAY},
            {"user_id": 102, "username": "bob", "name": "Bob", "followers_count": 900, "fetched_at": _at(23), "dt": DAY},
        ],
        "tweet_queries": [matched(1, "#DataEng"), matched(2, "#DataEng"), matched(3, "#DataEng"),
                          matched(3, "polars"), matched(4, "polars"), matched(5, "#DataEng", PREVIOUS)],
        "tweet_hashtags": [span(1, 0, tag="DataEng"), span(1, 10, tag="Polars"), span(2, 0, tag="dataeng"),
                           span(3, 0, tag="DataEng")],
        "tweet_mentions": [span(3, 20, username="Ana", user_id=104)],
        "tweet_urls": [span(1, 30, domain="pola.rs"), span(2, 30, domain="pola.rs"),
                       span(3, 30, domain="github.com")],
        "tweet_references": [
            {"tweet_id": 2, "reference_type": "replied_to", "referenced_tweet_id": 900, "dt": DAY},
            {"tweet_id": 3, "reference_type": "quoted", "referenced_tweet_id": 901, "dt": DAY},
            {"tweet_id": 4, "reference_type": "retweeted", "referenced_tweet_id": 902, "dt": DAY},
        ],
        "tweet_metrics_daily": [
            observed(1, PREVIOUS, (4, 1, 0, 0)), observed(1, DAY, (10, 2, 1, 0)),
            observed(2, DAY, (0, 0, 3, 1)), observed(3, DAY, (5, 0, 0, 0)), observed(4, DAY, None),
            observed(5, PREVIOUS, (100, 0, 0, 0)),
        ],
    })


def test_metrics_of_a_hand_built_day(warehouse: Warehouse) -> None:
    _load(warehouse, hand_built_day())
    result = analyze_day(warehouse, DAY)
    assert (result.tweets, result.scored_tweets, result.scored_new) == (4, 2, 2)

    # 4 tweets of DAY (tweet 5 is the day before); engagement 13 + 4 + 5 + 0; one reply, quote, retweet each.
    assert _rows(warehouse, "metrics_daily") == [(4, 3, 22, 15, 2, 4, 1, 1, 1, 1, 0.25, 0.25, 0.25)]
    assert _rows(warehouse, "metrics_volume_daily", order="query") == [("#DataEng", 3), ("polars", 2)]
    # Tweet 4 has no created_at: in the daily counts, in no hour.
    assert _rows(warehouse, "metrics_volume_hourly", order='query, "hour"') == [
        ("#DataEng", DAY, 9, 2), ("#DataEng", DAY, 10, 1), ("polars", DAY, 10, 1)]
    assert _rows(warehouse, "metrics_top_entities", order='kind, "rank"') == [
        ("domain", "pola.rs", 2, 2, 1), ("domain", "github.com", 1, 1, 2),
        ("hashtag", "dataeng", 3, 3, 1), ("hashtag", "polars", 1, 1, 2),
        ("mention", "ana", 1, 1, 1)]
    # Author 103 is not in `users` (the API did not expand it): no name, no followers, last by reach.
    assert _rows(warehouse, "metrics_top_authors", order="engagement_rank") == [
        (101, "ada", "Ada", 50, 2, 17, 1, 2), (102, "bob", "Bob", 900, 1, 5, 2, 1), (103, None, None, None, 1, 0, 3, 3)]
    assert _rows(warehouse, "metrics_languages", order="lang") == [("en", 2, 0.5), ("es", 1, 0.25), ("unknown", 1, 0.25)]
    # Tweet 1 was seen the day before with 4 likes + 1 retweet; today 10 + 2 + 1 reply.
    assert _rows(warehouse, "metrics_engagement_growth") == [(4, 1, 22, 5, 8, 6, 1, 1, 0)]

    # Only the English tweets have a stored score; Spanish (3) and no language (4) are not scored.
    sentiment = _scores(warehouse)
    assert {tid: s[0] for tid, s in sentiment.items()} == {1: "positive", 2: "negative"}
    assert sentiment[1][1] > 0.5 and sentiment[2][1] < -0.5 and sentiment[1][5] == DAY
    daily = _rows(warehouse, "metrics_sentiment_daily")
    assert daily[0][:6] == (4, 2, 2, 1, 0, 1)
    assert daily[0][6] == pytest.approx((sentiment[1][1] + sentiment[2][1]) / 2)


def test_rerun_replaces_only_its_day_and_top_n_cuts(warehouse: Warehouse) -> None:
    _load(warehouse, hand_built_day())
    analyze_day(warehouse, PREVIOUS)
    analyze_day(warehouse, DAY)
    before = {name: sorted(_rows(warehouse, name, PREVIOUS), key=repr) for name in METRIC_TABLES}
    assert before["metrics_daily"][0][:3] == (1, 1, 100)

    analyze_day(warehouse, DAY, top_n=1)
    assert _rows(warehouse, "metrics_top_entities", order="kind") == [
        ("domain", "pola.rs", 2, 2, 1), ("hashtag", "dataeng", 3, 3, 1), ("mention", "ana", 1, 1, 1)]
    # Top 1 by engagement (ada) and top 1 by followers (bob).
    assert [r[0] for r in _rows(warehouse, "metrics_top_authors", order="author_id")] == [101, 102]
    assert {name: sorted(_rows(warehouse, name, PREVIOUS), key=repr) for name in METRIC_TABLES} == before

    analyze_day(warehouse, DAY)
    first = {name: sorted(_rows(warehouse, name), key=repr) for name in METRIC_TABLES}
    analyze_day(warehouse, DAY)
    assert {name: sorted(_rows(warehouse, name), key=repr) for name in METRIC_TABLES} == first


def test_a_day_without_tweets_has_a_row_of_zeros(warehouse: Warehouse) -> None:
    result = analyze_day(warehouse, DAY)
    assert result.tweets == 0
    assert _rows(warehouse, "metrics_daily") == [(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None, None)]
    assert _rows(warehouse, "metrics_sentiment_daily") == [(0, 0, 0, 0, 0, 0, None)]
    assert _rows(warehouse, "metrics_engagement_growth") == [(0, 0, 0, 0, 0, 0, 0, 0, 0)]
    for name in ("metrics_volume_daily", "metrics_top_entities", "metrics_languages"):
        assert _rows(warehouse, name) == [], name
    assert _scores(warehouse) == {} and result.scored_new == 0


def _metric_rows(warehouse: Warehouse, day: date = DAY) -> dict[str, list[tuple]]:
    return {name: sorted(_rows(warehouse, name, day), key=repr) for name in METRIC_TABLES}


def test_a_second_run_of_a_day_scores_nothing_and_gives_identical_metrics(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(warehouse, hand_built_day())
    first = analyze_day(warehouse, DAY)
    assert first.scored_new == 2
    metrics, scores = _metric_rows(warehouse), _scores(warehouse)

    scored: list[list[str]] = []
    real = analyze.score_texts
    monkeypatch.setattr(analyze, "score_texts", lambda texts, workers=None: scored.append(texts) or real(texts, workers))
    # Forced: the rows went in without the pipeline's load, which `analyzed_days` would otherwise go by.
    second = analyze_day(warehouse, DAY, force=True)
    assert second.scored_new == 0 and scored == [[]]  # VADER saw no text
    assert (second.tweets, second.scored_tweets, second.rows) == (first.tweets, first.scored_tweets, first.rows)
    assert _metric_rows(warehouse) == metrics
    assert _scores(warehouse) == scores

    # A tweet added to the day (a later fetch) is the only one scored by the next run.
    _load(warehouse, {"tweets": _frames({"tweets": [_tweet(6, 104, "en", "a sad day", _at(11), (0, 0, 0, 0))]})["tweets"]})
    third = analyze_day(warehouse, DAY, force=True)
    assert third.scored_new == 1 and scored[-1] == ["a sad day"]
    assert set(_scores(warehouse)) == {1, 2, 6} and _rows(warehouse, "metrics_sentiment_daily")[0][:6] == (5, 3, 2, 1, 0, 2)


# Three days of tweets whose VADER scores follow from the lexicon by hand: each English text holds one lexicon
# word (valence v in vader_lexicon.txt: good 1.9, bad -2.5, great 3.1, sad -2.1) among words outside it, so
# its compound is v / sqrt(v^2 + 15), rounded to 4 places as VADER rounds it; "the table has rows" holds none (0.0).
D1, D2, D3 = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)
VALENCE = {"good": 1.9, "bad": -2.5, "great": 3.1, "sad": -2.1}


def _compound(word: str | None) -> float:
    v = VALENCE[word] if word else 0.0
    return round(v / math.sqrt(v * v + 15), 4)


def three_days() -> dict[str, pl.DataFrame]:
    def t(tid: int, author: int, lang: str | None, text: str, counts: tuple, day: date) -> dict:
        return _tweet(tid, author, lang, text, _at(10, day=day), counts, dt=day)

    return _frames({"tweets": [
        t(11, 1, "en", "good day", (3, 0, 0, 0), D1),
        t(12, 2, "en", "bad day", (1, 1, 0, 0), D1),
        t(13, 1, "fr", "bonjour", (0, 0, 0, 0), D1),
        t(21, 3, "en", "our release was great", (10, 2, 1, 1), D2),
        t(22, 3, "en", "the table has rows", (0, 0, 0, 0), D2),
        t(23, 4, "en", "a sad day", (2, 0, 0, 0), D2),
        t(24, 1, "es", "hola", (1, 0, 0, 0), D2),
        t(31, 5, "de", "guten Tag", (0, 0, 0, 0), D3),
        t(32, 5, None, "no language", (0, 0, 0, 0), D3),
    ]})


def test_metrics_over_three_days_match_hand_computed_values(warehouse: Warehouse) -> None:
    _load(warehouse, three_days())
    results = {day: analyze_day(warehouse, day) for day in (D3, D1, D2)}  # any order: each day is its own
    assert {d: (r.tweets, r.scored_tweets, r.scored_new) for d, r in results.items()} == {
        D1: (3, 2, 2), D2: (4, 3, 3), D3: (2, 0, 0)}

    # tweets, authors, engagement (likes + retweets + replies + quotes), likes
    assert {d: _rows(warehouse, "metrics_daily", d)[0][:4] for d in (D1, D2, D3)} == {
        D1: (3, 2, 5, 4), D2: (4, 3, 17, 13), D3: (2, 1, 0, 0)}
    assert {d: _rows(warehouse, "metrics_languages", d, order="lang") for d in (D1, D2, D3)} == {
        D1: [("en", 2, 2 / 3), ("fr", 1, 1 / 3)],
        D2: [("en", 3, 0.75), ("es", 1, 0.25)],
        D3: [("de", 1, 0.5), ("unknown", 1, 0.5)]}

    # tweets, scored, not scored, positive, neutral, negative; mean compound over the scored tweets
    expected = {
        D1: ((3, 2, 1, 1, 0, 1), (_compound("good") + _compound("bad")) / 2),
        D2: ((4, 3, 1, 1, 1, 1), (_compound("great") + _compound(None) + _compound("sad")) / 3),
        D3: ((2, 0, 2, 0, 0, 0), None),
    }
    for day, (counts, mean) in expected.items():
        [row] = _rows(warehouse, "metrics_sentiment_daily", day)
        assert row[:6] == counts, day
        assert row[6] == (None if mean is None else pytest.approx(mean, abs=1e-12)), day

    scores = _scores(warehouse)
    assert {tid: (s[0], s[1], s[5]) for tid, s in scores.items()} == {
        11: ("positive", _compound("good"), D1), 12: ("negative", _compound("bad"), D1),
        21: ("positive", _compound("great"), D2), 22: ("neutral", 0.0, D2), 23: ("negative", _compound("sad"), D2)}
    # "good day": (1.9 + 1) / (1.9 + 1 + 1 neutral word) positive, the rest neutral (VADER rounds to 3 places)
    assert scores[11][2:5] == (0.744, 0.256, 0.0)
    view = qualified("dashboard_tweets", warehouse.schema)
    assert sorted(warehouse.query(f"SELECT tweet_id, sentiment, compound FROM {view} WHERE dt = DATE '{D2}'")) == [
        (21, "positive", _compound("great")), (22, "neutral", 0.0), (23, "negative", _compound("sad")),
        (24, "not scored", None)]
    daily_view = qualified("dashboard_daily", warehouse.schema)
    assert warehouse.query(f"SELECT positive_share, negative_share FROM {daily_view} WHERE dt = DATE '{D2}'") == [
        (pytest.approx(1 / 3), pytest.approx(1 / 3))]

    # Analyzing every day again scores nothing and changes no row.
    before = {d: _metric_rows(warehouse, d) for d in (D1, D2, D3)}
    assert [analyze_day(warehouse, d).scored_new for d in (D1, D2, D3)] == [0, 0, 0]
    assert {d: _metric_rows(warehouse, d) for d in (D1, D2, D3)} == before and _scores(warehouse) == scores


def _sample_pages(n: int) -> tuple[list[dict], dict[str, pl.DataFrame]]:
    pages = list(generate_pages(DAY, "#DataEng", n, page_size=10))
    request = {"source": "sample", "query": "#DataEng", "fetched_at": "2026-11-24T23:59:59.999Z"}
    frames, _ = normalize_raw_file(encode_pages(FetchedPage(request=request, body=b) for b in pages), DAY)
    return pages, {name: deduplicate(frame, name) for name, frame in frames.items()}


def test_hard_case_sample_matches_counts_taken_from_the_raw_pages(warehouse: Warehouse) -> None:
    pages, frames = _sample_pages(12)
    _load(warehouse, frames)
    analyze_day(warehouse, DAY)

    # Worked out from the raw pages with plain Python: the tweet served on two pages counts once.
    tweets = {t["id"]: t for page in pages for t in page.get("data", [])}
    assert len(tweets) == 12
    users = {u["id"]: u for page in pages for u in page.get("includes", {}).get("users", [])}
    counts = [t.get("public_metrics", {}) for t in tweets.values()]
    engagement = sum(c.get(k, 0) for c in counts for k in ("like_count", "retweet_count", "reply_count", "quote_count"))
    refs = Counter(r["type"] for t in tweets.values() for r in t.get("referenced_tweets", []))
    langs = Counter(t.get("lang") or "unknown" for t in tweets.values())
    assert langs["unknown"] == 1  # the tweet with no optional field
    tags = Counter(h["tag"].lower() for t in tweets.values() for h in t.get("entities", {}).get("hashtags", []))
    hours = Counter(datetime.fromisoformat(t["created_at"]).hour for t in tweets.values() if "created_at" in t)
    missing = [t["author_id"] for t in tweets.values() if "author_id" in t and t["author_id"] not in users]
    assert len(missing) == 1  # the author the API could not expand

    daily = _rows(warehouse, "metrics_daily")[0]
    assert daily[:4] == (12, len({t["author_id"] for t in tweets.values() if "author_id" in t}), engagement,
                         sum(c.get("like_count", 0) for c in counts))
    assert daily[7:10] == (refs["replied_to"], refs["quoted"], refs["retweeted"])
    assert {r[0]: r[1] for r in _rows(warehouse, "metrics_languages")} == dict(langs)
    assert {r[1]: r[2] for r in _rows(warehouse, "metrics_top_entities") if r[0] == "hashtag"} == dict(tags)
    assert {r[2]: r[3] for r in _rows(warehouse, "metrics_volume_hourly")} == dict(hours)
    authors = {r[0]: r for r in _rows(warehouse, "metrics_top_authors")}
    assert authors[int(missing[0])][3] is None
    assert authors[int(missing[0])][7] == len(authors)  # unknown reach ranks last
    for uid, row in authors.items():
        if str(uid) in users:
            assert row[3] == users[str(uid)]["public_metrics"]["followers_count"]
    sentiment = _rows(warehouse, "metrics_sentiment_daily")[0]
    assert sentiment[:3] == (12, langs["en"], 12 - langs["en"])


def test_every_dashboard_view_exists_and_returns_the_day(warehouse: Warehouse) -> None:
    _load(warehouse, hand_built_day())
    analyze_day(warehouse, DAY)
    for name in view_selects(warehouse.schema):
        rows = warehouse.query(f"SELECT COUNT(*) FROM {qualified(name, warehouse.schema)} WHERE dt = DATE '{DAY}'")
        assert rows[0][0] > 0, name
    top = warehouse.query(
        f"SELECT tweet_id, engagement, sentiment, url, username FROM {qualified('dashboard_tweets', warehouse.schema)} "
        f"WHERE dt = DATE '{DAY}' AND engagement_rank = 1"
    )
    assert top == [(1, 13, "positive", "https://x.com/i/web/status/1", "ada")]
    # Every tweet of a day is in the view, ranked within its day (tweet 5 alone on the day before).
    ranks = warehouse.query(f"SELECT dt, tweet_id, engagement_rank FROM {qualified('dashboard_tweets', warehouse.schema)}")
    assert sorted(ranks) == [(PREVIOUS, 5, 1), (DAY, 1, 1), (DAY, 2, 3), (DAY, 3, 2), (DAY, 4, 4)]
    growth = warehouse.query(f"SELECT growth_rate FROM {qualified('dashboard_engagement_growth', warehouse.schema)}")
    assert growth == [(pytest.approx(8 / 5),)]


def test_vader_scores_english_only_and_marks_the_rest_not_scored() -> None:
    frame = pl.DataFrame({
        "tweet_id": [1, 2, 3, 4, 5],
        "lang": ["en", "en", "fr", None, "en"],
        "text": ["What a great, happy day!", "The table has rows.", "C'est génial !", "great", None],
    })
    scored = score_sentiment(frame).sort("tweet_id")
    assert scored["label"].to_list() == ["positive", "neutral", "not scored", "not scored", "not scored"]
    assert scored["scored"].to_list() == [True, True, False, False, False]
    assert scored["compound"][1] == 0.0 and scored["compound"][2:].is_null().all()
    assert scored["positive"][0] > 0.5


def _view(warehouse: Warehouse, view: str, columns: str, day: date = DAY, order: str = "") -> list[tuple]:
    cols = ", ".join(quote_ident(c) for c in columns.split())
    sql = f"SELECT {cols} FROM {qualified(view, warehouse.schema)} WHERE dt = DATE '{day}'"
    return warehouse.query(sql + (f" ORDER BY {order}" if order else ""))


def _default_field_pages(day: date, ids: range, query: str = "#DataEng") -> dict[str, pl.DataFrame]:
    """Raw pages as the X API sends them when `tweet.fields` is not asked for: id, text, edit history."""
    body = {"data": [{"id": str(i), "text": f"post {i} #DataEng @ana", "edit_history_tweet_ids": [str(i)]}
                     for i in ids], "meta": {"result_count": len(ids)}}
    request = {"source": "x_api", "query": query, "fetched_at": f"{day.isoformat()}T23:00:00.000Z"}
    frames, _ = normalize_raw_file(encode_pages([FetchedPage(request=request, body=body)]), day)
    return frames


def test_metrics_whose_inputs_are_missing_are_unknown_not_zero(warehouse: Warehouse) -> None:
    # DAY: only default-field tweets. PREVIOUS: two of them plus two tweets with every field (one a reply).
    previous = _default_field_pages(PREVIOUS, range(11, 13))
    previous["tweets"] = pl.concat([previous["tweets"], _frames({"tweets": [
        _tweet(21, 101, "en", "great", _at(9, day=PREVIOUS), (2, 1, 0, 0), dt=PREVIOUS),
        _tweet(22, 102, "fr", "bien", _at(10, day=PREVIOUS), (1, 0, 0, 0), dt=PREVIOUS)]})["tweets"]])
    previous["tweet_references"] = _frames({"tweet_references": [
        {"tweet_id": 22, "reference_type": "replied_to", "referenced_tweet_id": 900, "dt": PREVIOUS}]})[
        "tweet_references"]
    for frames in (_default_field_pages(DAY, range(1, 4)), previous):
        _load(warehouse, frames)
    analyze_day(warehouse, PREVIOUS)
    analyze_day(warehouse, DAY)

    assert _rows(warehouse, "metrics_coverage") == [(3, 0, 0, 0, 0, 0)]
    assert _rows(warehouse, "metrics_coverage", PREVIOUS) == [(4, 2, 2, 2, 2, 2)]
    columns = ("tweets authors engagement like_count reply_tweets retweet_tweets reply_share retweet_share "
               "scored_tweets positive_share mean_compound tweets_with_lang")
    # The metrics tables count what is there; the view says what is unknown.
    assert _view(warehouse, "dashboard_daily", columns) == [
        (3, None, None, None, None, None, None, None, 0, None, None, 0)]
    # Mixed: engagement of the tweets that carry counts; shares of the tweets whose references are known.
    assert _view(warehouse, "dashboard_daily", columns, PREVIOUS) == [
        (4, 2, 4, 3, 1, 0, 0.5, 0.0, 1, 1.0, pytest.approx(0.6249), 2)]
    assert _view(warehouse, "dashboard_query_daily", "query tweets authors engagement retweet_share") == [
        ("#DataEng", 3, None, None, None)]
    # The language is missing, which is not another language.
    assert _view(warehouse, "dashboard_languages", "lang tweets share lang_missing") == [("unknown", 3, 1.0, True)]
    assert _view(warehouse, "dashboard_top_authors", "author_id") == []
    assert _view(warehouse, "dashboard_tweets", "tweet_id engagement like_count", order="tweet_id") == [
        (1, None, None), (2, None, None), (3, None, None)]
    # "#DataEng @ana" is in the text, but without `entities` no hashtag or mention is known.
    for table in ("metrics_top_entities", "metrics_query_entities", "metrics_rising_entities"):
        assert _rows(warehouse, table) == [], table


def test_per_query_metrics_and_rising_topics_of_a_hand_built_day(warehouse: Warehouse) -> None:
    earlier = DAY - timedelta(days=3)
    frames = hand_built_day()
    frames["tweets"] = pl.concat([frames["tweets"], _frames({"tweets": [
        _tweet(31, 101, "en", "#DataEng #python", _at(9, day=earlier), (1, 0, 0, 0), dt=earlier),
        _tweet(32, 101, "en", "#DataEng", _at(9, day=earlier), (1, 0, 0, 0), dt=earlier)]})["tweets"]])
    frames["tweet_hashtags"] = pl.concat([frames["tweet_hashtags"], _frames({"tweet_hashtags": [
        {"tweet_id": 31, "start_pos": 0, "end_pos": 8, "tag": "DataEng", "dt": earlier},
        {"tweet_id": 31, "start_pos": 9, "end_pos": 16, "tag": "python", "dt": earlier},
        {"tweet_id": 32, "start_pos": 0, "end_pos": 8, "tag": "DATAENG", "dt": earlier}]})["tweet_hashtags"]])
    _load(warehouse, frames)
    analyze_day(warehouse, DAY)

    # Tweet 3 matched both queries and counts in both; tweet 4 (no counts, a retweet) only in "polars".
    assert _rows(warehouse, "metrics_query_daily", order="query") == [
        ("#DataEng", 3, 2, 22, 3, 3, 3, 1, 1, 0), ("polars", 2, 2, 5, 2, 1, 2, 0, 1, 1)]
    assert _view(warehouse, "dashboard_query_daily", "query engagement reply_share quote_share retweet_share",
                 order="query") == [("#DataEng", 22, 1 / 3, 1 / 3, 0.0), ("polars", 5, 0.0, 0.5, 0.5)]
    assert _rows(warehouse, "metrics_query_entities", order='query, kind, "rank"') == [
        ("#DataEng", "domain", "pola.rs", 2, 2, 1), ("#DataEng", "domain", "github.com", 1, 1, 2),
        ("#DataEng", "hashtag", "dataeng", 3, 3, 1), ("#DataEng", "hashtag", "polars", 1, 1, 2),
        ("#DataEng", "mention", "ana", 1, 1, 1),
        ("polars", "domain", "github.com", 1, 1, 1), ("polars", "hashtag", "dataeng", 1, 1, 1),
        ("polars", "mention", "ana", 1, 1, 1)]
    # Days with data in the 7 before DAY: `earlier` and PREVIOUS. #dataeng: 3 today against 2 over those days.
    assert _rows(warehouse, "metrics_rising_entities", order='kind, "rank"') == [
        ("domain", "pola.rs", 2, 0, 2, 0.0, 2.0, 1), ("domain", "github.com", 1, 0, 2, 0.0, 1.0, 2),
        ("hashtag", "dataeng", 3, 2, 2, 1.0, 2.0, 1), ("hashtag", "polars", 1, 0, 2, 0.0, 1.0, 2),
        ("mention", "ana", 1, 0, 2, 0.0, 1.0, 1)]
    analyze_day(warehouse, earlier)  # no earlier day: no change, ranked by occurrences
    assert _rows(warehouse, "metrics_rising_entities", earlier, order='"rank"') == [
        ("hashtag", "dataeng", 2, 0, 0, None, None, 1), ("hashtag", "python", 1, 0, 0, None, None, 2)]


def _analyzed_at(warehouse: Warehouse, day: date = DAY) -> datetime:
    [(at,)] = warehouse.query(f'SELECT "analyzed_at" FROM {qualified("analyzed_days", warehouse.schema)} '
                              f"WHERE \"dt\" = DATE '{day}'")
    return at


def test_an_analysis_is_kept_until_a_load_changes_its_inputs(
    warehouse: Warehouse, local_bucket, sample_frames, curate_frames
) -> None:
    def load(day: date, frames: dict[str, pl.DataFrame]) -> None:
        files = curate_frames(local_bucket, day, frames)
        for name in TABLES:
            warehouse.load_day(local_bucket, files[name])

    frames = sample_frames(DAY, 60)
    load(DAY, frames)
    first = analyze_day(warehouse, DAY)
    assert first.unchanged_since is None and first.scored_new > 0
    metrics, computed_at = _metric_rows(warehouse), _analyzed_at(warehouse)

    # Analyzed again, and after the same rows were loaded again: nothing recomputed, the same metrics.
    for reload in (False, True):
        if reload:
            load(DAY, frames)
        kept = analyze_day(warehouse, DAY)
        assert kept.unchanged_since == computed_at and _analyzed_at(warehouse) == computed_at, reload
        assert (kept.tweets, kept.scored_tweets, kept.rows, kept.scored_new) == (
            first.tweets, first.scored_tweets, first.rows, 0)
        assert _metric_rows(warehouse) == metrics
    assert kept.describe().startswith("kept: no load changed their inputs since")

    # Rows of the day removed from a metrics table (by hand, or the table dropped) are computed again.
    removed = f"DELETE FROM {qualified('metrics_top_entities', warehouse.schema)} WHERE \"dt\" = DATE '{DAY}'"
    warehouse.execute_script([removed])
    assert analyze_day(warehouse, DAY).unchanged_since is None and _metric_rows(warehouse) == metrics

    # Another top N is another analysis; so is `force`.
    assert analyze_day(warehouse, DAY, top_n=3).unchanged_since is None
    assert analyze_day(warehouse, DAY).unchanged_since is None
    assert analyze_day(warehouse, DAY, force=True).unchanged_since is None

    # The next day's run fetched 10 of the day's tweets again: their newer copies move to that day, so the
    # day's metrics are recomputed without them (a load of any day counts).
    moved = frames["tweets"]["tweet_id"].head(10).to_list()
    later = DAY + timedelta(days=1)
    again = {name: f.filter(pl.col("tweet_id").is_in(moved)) for name, f in frames.items() if name != "users"}
    again = {name: f.with_columns(pl.lit(later).alias("dt"), *[(pl.col(c) + timedelta(days=1)).alias(c)
                                  for c in ("fetched_at", "observed_at") if c in f.columns])
             for name, f in again.items()}
    load(later, {**again, "users": TABLES["users"].empty_frame()})
    recomputed = analyze_day(warehouse, DAY)
    assert recomputed.unchanged_since is None and recomputed.tweets == first.tweets - 10
    assert analyze_day(warehouse, DAY).unchanged_since is not None


def test_load_records_emptied_and_filled_again_do_not_hide_a_change(
    warehouse: Warehouse, local_bucket, sample_frames, curate_frames
) -> None:
    def load(frames: dict[str, pl.DataFrame]) -> None:
        files = curate_frames(local_bucket, DAY, frames)
        for name in TABLES:
            warehouse.load_day(local_bucket, files[name])

    load(sample_frames(DAY, 40))
    assert analyze_day(warehouse, DAY).tweets == 40
    # `loaded_days` emptied, then other rows loaded: every version is 1 again, as when the day was analyzed.
    warehouse.execute_script([f"DELETE FROM {qualified('loaded_days', warehouse.schema)}"])
    load(sample_frames(DAY, 60))
    again = analyze_day(warehouse, DAY)
    assert again.unchanged_since is None and again.tweets == 60
