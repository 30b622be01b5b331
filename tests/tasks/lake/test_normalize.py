import gzip
from datetime import date

import polars as pl
import pytest

from tasks.lake.land import FetchedPage, encode_pages
from tasks.lake.normalize import deduplicate, normalize_pages, normalize_raw_file, read_raw_file
from tasks.schema import TABLES
from tasks.sources.sample import HARD_TEXTS, generate_pages


def _pages(bodies: list[dict], query: str = "#DataEng") -> bytes:
    request = {"source": "sample", "endpoint": "/2/tweets/search/recent", "query": query,
               "fetched_at": "2026-11-24T23:59:59.999Z"}
    return encode_pages(FetchedPage(request=request, body=b) for b in bodies)


@pytest.fixture
def normalized(day: date):
    return normalize_pages(read_raw_file(_pages(list(generate_pages(day, "#DataEng", 250)))), day)


def test_every_table_matches_the_schema_module(normalized) -> None:
    frames, _ = normalized
    assert set(frames) == set(TABLES)
    for name, frame in frames.items():
        assert frame.schema == TABLES[name].polars_schema, name


def test_hard_texts_survive_unchanged(normalized) -> None:
    tweets = normalized[0]["tweets"]
    texts = tweets["text"].to_list()
    for hard in HARD_TEXTS:
        assert any(t.startswith(hard) for t in texts), hard


def test_counts_and_partial_errors(normalized) -> None:
    frames, stats = normalized
    assert stats.pages == 4
    assert stats.tweets_seen == 251  # one tweet served on two pages
    assert stats.api_errors == 1
    assert stats.skipped == {}
    assert deduplicate(frames["tweets"], "tweets").height == 250


def test_tweet_without_optional_fields_keeps_nulls(normalized, day: date) -> None:
    pages = list(generate_pages(day, "#DataEng", 250))
    bare_id = int(pages[0]["data"][-1]["id"])
    row = normalized[0]["tweets"].filter(pl.col("tweet_id") == bare_id).row(0, named=True)
    assert row["author_id"] is None and row["created_at"] is None and row["like_count"] is None
    assert row["edit_history_tweet_ids"] == str(bare_id)


def test_author_missing_from_includes_is_kept(normalized, day: date) -> None:
    pages = list(generate_pages(day, "#DataEng", 250))
    orphan = int(pages[0]["data"][0]["author_id"])
    frames = normalized[0]
    assert frames["tweets"].filter(pl.col("author_id") == orphan).height == 1
    assert frames["users"].filter(pl.col("user_id") == orphan).height == 0


def test_entities_and_references(normalized) -> None:
    frames = normalized[0]
    urls = frames["tweet_urls"]
    assert urls.height > 0 and urls["domain"].null_count() == 0
    assert not urls["domain"].str.starts_with("www.").any()
    refs = frames["tweet_references"]
    assert set(refs["reference_type"].unique()) <= {"replied_to", "quoted", "retweeted"}
    mentions = frames["tweet_mentions"]
    assert mentions["user_id"].null_count() == 0


def test_bad_ids_are_counted_not_silently_dropped(day: date) -> None:
    body = {"data": [{"id": "not-a-number", "text": "x"}, {"id": "42", "text": "ok"}],
            "meta": {"result_count": 2}}
    frames, stats = normalize_pages(read_raw_file(_pages([body])), day)
    assert frames["tweets"]["tweet_id"].to_list() == [42]
    assert stats.skipped == {"tweet without a numeric id": 1}


def test_empty_page_gives_empty_tables(day: date) -> None:
    frames, stats = normalize_pages(read_raw_file(_pages([{"meta": {"result_count": 0}}])), day)
    assert stats.pages == 1 and stats.tweets_seen == 0
    assert all(f.is_empty() for f in frames.values())


def test_dedupe_keeps_the_freshest_counts(day: date) -> None:
    older = {"data": [{"id": "7", "text": "t", "public_metrics": {"like_count": 1}}], "meta": {"result_count": 1}}
    newer = {"data": [{"id": "7", "text": "t", "public_metrics": {"like_count": 9}}], "meta": {"result_count": 1}}
    early = read_raw_file(_pages([older]))
    late = read_raw_file(encode_pages([FetchedPage(
        request={"source": "s", "query": "q", "fetched_at": "2026-11-25T01:00:00.000Z"}, body=newer)]))
    frames = [normalize_pages(f, day)[0]["tweets"] for f in (late, early)]
    merged = deduplicate(pl.concat(frames), "tweets")
    assert merged["like_count"].to_list() == [9]


def test_page_of_the_wrong_shape_is_counted_and_the_rest_kept(day: date) -> None:
    good = {"data": [{"id": "42", "text": "ok"}], "meta": {"result_count": 1}}
    wrong = {"data": "this is not a list of tweets", "meta": {"result_count": 1}}
    frames, stats = normalize_raw_file(_pages([good, wrong, good]), day)
    assert frames["tweets"]["tweet_id"].to_list() == [42, 42]
    assert stats.skipped == {"page not in the X API v2 shape": 1}
    assert stats.pages == 3


def test_tweet_that_is_not_utf8_is_counted_and_the_rest_kept(day: date) -> None:
    lines = gzip.decompress(_pages([{"data": [{"id": "1", "text": "TEXT"}]}, {"data": [{"id": "2", "text": "ok"}]}]))
    frames, stats = normalize_raw_file(gzip.compress(lines.replace(b"TEXT", b"caf\xe9")), day)
    assert frames["tweets"]["tweet_id"].to_list() == [2]
    assert stats.skipped == {"tweet text not valid UTF-8 (invalid bytes or a lone surrogate)": 1}
    assert stats.pages == 2 and stats.tweets_seen == 2


def test_byte_order_mark_and_numeric_strings_are_read(day: date) -> None:
    """A raw file that starts with a UTF-8 BOM; a count sent as a numeric string."""
    body = {"data": [{"id": "7", "text": "ok", "public_metrics": {"like_count": "5", "retweet_count": 2}}]}
    frames, stats = normalize_raw_file(b"\xef\xbb\xbf" + gzip.decompress(_pages([body])), day)
    assert frames["tweets"].select("tweet_id", "like_count", "retweet_count").rows() == [(7, 5, 2)]
    assert stats.skipped == {}


def test_unreadable_created_at_is_counted_and_the_row_kept(day: date) -> None:
    body = {
        "data": [
            {"id": "1", "text": "a", "created_at": "yesterday at noon"},
            {"id": "2", "text": "b", "created_at": "2026-11-24T10:00:00+02:00"},
            {"id": "3", "text": "c"},
        ],
        "includes": {"users": [{"id": "9", "username": "u", "created_at": "2015-13-45T00:00:00Z"}]},
        "meta": {"result_count": 3},
    }
    frames, stats = normalize_raw_file(_pages([body]), day)
    created = dict(zip(frames["tweets"]["tweet_id"].to_list(), frames["tweets"]["created_at"].to_list(), strict=True))
    assert created[1] is None and created[3] is None
    assert created[2].isoformat() == "2026-11-24T08:00:00+00:00"
    assert frames["users"]["user_id"].to_list() == [9] and frames["users"]["created_at"].to_list() == [None]
    assert stats.skipped == {
        "tweet created_at not an RFC 3339 time (row kept, value null)": 1,
        "user created_at not an RFC 3339 time (row kept, value null)": 1,
    }


def test_created_at_with_offsets_and_fractions_is_read_as_utc(day: date) -> None:
    """Columns that Arrow's ISO 8601 cast reads whole, and one it rejects (nanoseconds), which polars reads."""
    texts = {
        "1": "2026-11-24T10:00:00.123Z",
        "2": "2026-11-24T10:00:00+02:00",
        "3": "2026-11-24T10:00:00.5-05:30",
        "4": "2026-11-24T10:00:00.123456789Z",
    }
    expected = {"1": "2026-11-24T10:00:00.123000", "2": "2026-11-24T08:00:00.000000",
                "3": "2026-11-24T15:30:00.500000", "4": "2026-11-24T10:00:00.123456"}
    for ids in (["1", "2", "3"], ["1", "4"]):
        body = {"data": [{"id": i, "text": "t", "created_at": texts[i]} for i in ids], "meta": {"result_count": len(ids)}}
        frames, stats = normalize_raw_file(_pages([body]), day)
        created = frames["tweets"].select("tweet_id", pl.col("created_at").dt.replace_time_zone(None)).rows()
        assert {str(k): v.isoformat(timespec="microseconds") for k, v in created} == {i: expected[i] for i in ids}
        assert stats.skipped == {}


def test_raw_file_of_several_gzip_members_reads_every_member(day: date) -> None:
    """Raw files appended to (one gzip member per write) read as one file, like `gzip -d`."""
    first = _pages([{"data": [{"id": "1", "text": "a"}], "meta": {"result_count": 1}}])
    second = _pages([{"data": [{"id": "2", "text": "b"}], "meta": {"result_count": 1}}])
    frames, stats = normalize_raw_file(first + second, day)
    assert frames["tweets"]["tweet_id"].to_list() == [1, 2]
    assert stats.pages == 2


def test_truncated_raw_file_is_a_clear_error(day: date) -> None:
    data = _pages([{"data": [{"id": "1", "text": "a"}], "meta": {"result_count": 1}}])
    with pytest.raises(EOFError, match="truncated"):
        normalize_raw_file(data[: len(data) // 2], day)


def test_null_and_empty_lists_and_null_elements_give_no_rows(day: date) -> None:
    body = {
        "data": [
            None,
            {"id": "1", "text": "a", "entities": {"hashtags": [None, {"start": 0, "end": 2, "tag": "x"}]},
             "referenced_tweets": [None]},
            {"id": "2", "text": "b", "entities": {"hashtags": [], "urls": None}, "referenced_tweets": []},
        ],
        "includes": {"users": [None, {"id": "9", "username": "u"}]},
        "meta": {"result_count": 2},
    }
    empty = {"data": None, "includes": {"users": []}, "meta": {"result_count": 0}}
    frames, stats = normalize_raw_file(_pages([body, empty]), day)
    assert frames["tweets"]["tweet_id"].to_list() == [1, 2]
    assert frames["tweet_hashtags"].select("tweet_id", "tag").rows() == [(1, "x")]
    assert frames["tweet_references"].is_empty() and frames["tweet_urls"].is_empty()
    assert frames["users"]["user_id"].to_list() == [9]
    assert stats.tweets_seen == 2 and stats.skipped == {}


def _raw_line(tweets: list[str], users: list[str]) -> bytes:
    """One raw page written by hand, so that it can hold what `json.dumps` never writes."""
    request = '{"source": "sample", "query": "q", "fetched_at": "2026-11-24T23:59:59.999Z"}'
    return (f'{{"request": {request}, "status": 200, "body": {{"data": [{", ".join(tweets)}], '
            f'"includes": {{"users": [{", ".join(users)}]}}, "meta": {{"result_count": {len(tweets)}}}}}}}\n').encode()


def test_one_bad_value_drops_only_its_tweet_not_the_page(day: date) -> None:
    """An id sent as a number, a lone surrogate, invalid UTF-8, a mention's id sent as a number and a count
    above 2^63 each cost their own tweet or user (a count only its value), counted by reason; every good
    tweet of the page is kept."""
    good = [f'{{"id": "{n}", "text": "ok {n}", "author_id": "9"}}' for n in range(10, 15)]
    bad = [
        '{"id": 1, "text": "id as a number"}',
        '{"id": "2", "text": "lone \\ud800 surrogate"}',
        '{"id": "3", "text": "caf\xe9"}',
        '{"id": "4", "text": "huge", "public_metrics": {"like_count": 9223372036854775808, "reply_count": 2}}',
        '{"id": "5", "text": "@u", "entities": {"mentions": [{"start": 0, "end": 2, "username": "u", "id": 77}]}}',
    ]
    users = ['{"id": "9", "username": "fine"}', '{"id": 8, "username": "numeric id"}',
             '{"id": "7", "username": "\\udfff"}']
    line = _raw_line([good[0], *bad, *good[1:]], users)
    other = _raw_line(['{"id": "20", "text": "next page"}'], [])
    frames, stats = normalize_raw_file(line.replace(b"\xc3\xa9", b"\xe9") + other, day)
    tweets = frames["tweets"].sort("tweet_id")
    assert tweets["tweet_id"].to_list() == [4, 10, 11, 12, 13, 14, 20]
    assert tweets.filter(pl.col("tweet_id") == 4).select("like_count", "reply_count").row(0) == (None, 2)
    assert frames["users"]["user_id"].to_list() == [9]
    assert stats.skipped == {
        "tweet id not a string": 1,
        "tweet text not valid UTF-8 (invalid bytes or a lone surrogate)": 2,
        "user id not a string": 1,
        "user text not valid UTF-8 (invalid bytes or a lone surrogate)": 1,
        "tweet not in the X API v2 shape": 1,
    }
    assert stats.cleaned == {"tweets.like_count: out of range (0 <= n <= 10^12) -> null": 1}
    assert stats.pages == 2 and stats.tweets_seen == 11


def test_a_negative_or_huge_count_is_made_null_and_counted(day: date) -> None:
    """Counts outside 0..10^12 would make the day's sums overflow in the warehouse after the load committed."""
    body = {
        "data": [
            {"id": "1", "text": "a", "public_metrics": {"like_count": -5, "retweet_count": 3}},
            {"id": "2", "text": "b", "public_metrics": {"like_count": 2**62, "impression_count": 10**12}},
        ],
        "includes": {"users": [{"id": "9", "public_metrics": {"followers_count": -1, "tweet_count": 7}}]},
    }
    frames, stats = normalize_raw_file(_pages([body]), day)
    tweets = frames["tweets"].sort("tweet_id").select("like_count", "retweet_count", "impression_count")
    assert tweets.rows() == [(None, 3, None), (None, None, 10**12)]
    assert frames["tweet_metrics_daily"].sort("tweet_id")["like_count"].to_list() == [None, None]
    assert frames["users"].select("followers_count", "tweet_count").rows() == [(None, 7)]
    assert stats.cleaned == {
        "tweets.like_count: out of range (0 <= n <= 10^12) -> null": 2,
        "users.followers_count: out of range (0 <= n <= 10^12) -> null": 1,
    }
