from datetime import date

from tasks.sources.sample import HARD_TEXTS, generate_pages, snowflake_time


def test_same_seed_day_and_query_give_the_same_pages(day: date) -> None:
    assert list(generate_pages(day, "q", 230)) == list(generate_pages(day, "q", 230))
    assert list(generate_pages(day, "q", 230)) != list(generate_pages(day, "other", 230))


def test_pages_have_the_x_api_shape_and_the_hard_cases(day: date) -> None:
    pages = list(generate_pages(day, "#DataEng", 250))
    assert [p["meta"]["result_count"] for p in pages] == [100, 101, 50, 0]
    assert all("next_token" in p["meta"] for p in pages[:-1]) and "next_token" not in pages[-1]["meta"]
    first = pages[0]
    assert set(first) == {"data", "includes", "meta", "errors"}
    assert first["errors"][0]["resource_type"] == "user"
    texts = [t["text"] for t in first["data"]]
    for hard in HARD_TEXTS:
        assert any(t.startswith(hard) for t in texts)
    included = {u["id"] for u in first["includes"]["users"]}
    assert first["data"][0]["author_id"] not in included  # author missing from includes
    bare = first["data"][-1]
    assert set(bare) == {"id", "text", "edit_history_tweet_ids"}
    assert pages[1]["data"][-1]["id"] == first["data"][-1]["id"]  # the same tweet on two pages
    for tweet in first["data"][:-1]:
        assert snowflake_time(int(tweet["id"])).date() == day
        assert tweet["created_at"].startswith(day.isoformat())


def test_plain_generation_has_exactly_n_tweets(day: date) -> None:
    pages = list(generate_pages(day, "q", 1234, hard_cases=False))
    ids = [t["id"] for p in pages for t in p["data"]]
    assert len(ids) == len(set(ids)) == 1234
    assert "errors" not in pages[0]
