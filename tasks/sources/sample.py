"""Deterministic generator of X API v2 recent-search response pages.

The pages have the shape the real API returns (`data`, `includes.users`, `includes.tweets`,
`meta.next_token`, `meta.result_count`, sometimes `errors`), with every field the pipeline reads, and
on request the hard cases a real day contains: 4-byte UTF-8, right-to-left and CJK text, newlines,
quotes and commas, authors missing from `includes`, a partial `errors` array, an empty page, the same
tweet on two pages and tweets that carry no optional field at all. The same seed, day and query always
give the same pages, so the embedded run, the tests, the local X API server and the benchmark share it.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tasks.lake.land import MAX_TWEETS_PER_PAGE, FetchedPage

TWITTER_EPOCH_MS = 1288834974657
SEARCH_ENDPOINT = "/2/tweets/search/recent"

# Texts that break naive CSV writers, byte-length VARCHARs and left-to-right assumptions.
HARD_TEXTS: tuple[str, ...] = (
    'She said "ship it", then left,\nand the build went green 🚀🔥 #DataEng',
    "Emoji and astral planes: 😀👩‍💻🏳️‍🌈 𝕏 𠜎𠜱 — all 4-byte UTF-8 #unicode",
    "مرحبا بالعالم! خط بيانات يومي #بيانات",
    "שלום עולם, זה ציוץ מימין לשמאל",
    "データパイプラインは毎日動きます。東京から、こんにちは #データ",
    '"Quoted", comma, and\r\nCRLF line break; backslash \\ and tab\there',
    "Trailing newline and a lone quote \" inside\n",
)
WORDS = ["data", "pipeline", "prefect", "polars", "redshift", "s3", "lake", "warehouse", "dashboard", "daily", "batch", "stream", "schema", "merge", "load", "copy", "manifest", "parquet", "csv", "tweet", "metrics", "python", "cloud", "analytics", "sql"]
TAGS = ("DataEng", "Python", "Prefect", "AWS", "Redshift", "polars", "OpenSource", "BigData", "ETL")
LANGS = ("en", "en", "en", "en", "es", "fr", "de", "ja", "ar", "pt")
DOMAINS = ("example.com", "docs.prefect.io", "aws.amazon.com", "pola.rs", "github.com")


def snowflake(ts: datetime, sequence: int) -> int:
    """An X id for `ts`: milliseconds since the X epoch in the high bits, as the real ids are built."""
    ms = int(ts.timestamp() * 1000) - TWITTER_EPOCH_MS
    return (ms << 22) | (sequence & 0x3FFFFF)


def snowflake_time(tweet_id: int) -> datetime:
    return datetime.fromtimestamp(((tweet_id >> 22) + TWITTER_EPOCH_MS) / 1000, tz=UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _user(uid: int, rng: random.Random) -> dict[str, Any]:
    followers = int(rng.paretovariate(1.2) * 50)
    return {
        "id": str(uid),
        "username": f"user_{uid % 1_000_000:06d}",
        "name": rng.choice(("Ada", "Grace", "Linus", "Guido", "Margaret", "Ken")) + f" {uid % 997}",
        "description": "Builds data things, writes, notes" if uid % 3 else "",
        "location": rng.choice(("Berlin", "東京", "São Paulo", "", "Cairo")),
        "created_at": iso(datetime(2015, 1, 1, tzinfo=UTC) + timedelta(days=uid % 3000)),
        "verified": uid % 11 == 0,
        "profile_image_url": f"https://pbs.twimg.com/profile_images/{uid}/normal.jpg",
        "public_metrics": {
            "followers_count": followers,
            "following_count": rng.randint(0, 2000),
            "tweet_count": rng.randint(1, 50_000),
            "listed_count": rng.randint(0, 100),
        },
    }


class _DayGenerator:
    def __init__(self, day: date, query: str, n_tweets: int, seed: int, hard_cases: bool) -> None:
        self.day, self.query, self.n_tweets, self.hard_cases = day, query, n_tweets, hard_cases
        self.rng = random.Random(seed * 1_000_003 + zlib.crc32(f"{day.isoformat()}|{query}".encode()))
        self.n_users = max(5, n_tweets // 4)
        self.user_base = 10_000 + zlib.crc32(query.encode()) % 1000 * 1_000_000
        self.users: dict[int, dict[str, Any]] = {}
        # An X id names one post forever; days generated with other sizes share the random stream's first
        # timestamps, so the size salts the id's sequence bits (XOR: still one id per index) and a tweet id never
        # names two different posts (the analysis keeps one sentiment score per id).
        self.id_salt = zlib.crc32(f"{n_tweets}".encode()) & 0x3FFFFF

    def user(self, uid: int) -> dict[str, Any]:
        if uid not in self.users:
            if len(self.users) > 50_000:  # bounded cache for very large generated days
                self.users.clear()
            self.users[uid] = _user(uid, random.Random(uid))
        return self.users[uid]

    def tweet(self, idx: int, ts: datetime) -> dict[str, Any]:
        rng = self.rng
        tid = snowflake(ts, idx ^ self.id_salt)
        author = self.user_base + rng.randrange(self.n_users)
        if self.hard_cases and idx < len(HARD_TEXTS):
            text = HARD_TEXTS[idx]
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25)))
        entities: dict[str, list[dict[str, Any]]] = {}
        for tag in rng.sample(TAGS, rng.randint(0, 2)):
            start = len(text) + 1
            text += f" #{tag}"
            entities.setdefault("hashtags", []).append({"start": start, "end": start + len(tag) + 1, "tag": tag})
        if rng.random() < 0.3:
            mid = self.user_base + rng.randrange(self.n_users)
            handle = self.user(mid)["username"]
            start = len(text) + 1
            text += f" @{handle}"
            entities["mentions"] = [{"start": start, "end": start + len(handle) + 1, "username": handle, "id": str(mid)}]
        if rng.random() < 0.25:
            domain = rng.choice(DOMAINS)
            short = f"https://t.co/{tid % 10**10:010d}"
            start = len(text) + 1
            text += f" {short}"
            entities["urls"] = [{
                "start": start, "end": start + len(short), "url": short,
                "expanded_url": f"https://{domain}/post/{tid % 9973}?utm_source=x",
                "display_url": f"{domain}/post/{tid % 9973}",
            }]
        if rng.random() < 0.05:
            start = len(text) + 1
            text += " $AMZN"
            entities["cashtags"] = [{"start": start, "end": start + 5, "tag": "AMZN"}]
        likes = int(rng.paretovariate(1.5)) - 1
        tweet: dict[str, Any] = {
            "id": str(tid),
            "text": text,
            "created_at": iso(ts),
            "author_id": str(author),
            "conversation_id": str(tid),
            "lang": rng.choice(LANGS),
            "possibly_sensitive": rng.random() < 0.02,
            "edit_history_tweet_ids": [str(tid)],
            "public_metrics": {
                "retweet_count": likes // 4,
                "reply_count": likes // 6,
                "like_count": likes,
                "quote_count": likes // 10,
                "bookmark_count": likes // 8,
                "impression_count": likes * 37 + rng.randint(0, 500),
            },
        }
        if entities:
            tweet["entities"] = entities
        roll = rng.random()
        if roll < 0.25:
            kind = "replied_to" if roll < 0.12 else ("quoted" if roll < 0.18 else "retweeted")
            ref_id = tid - rng.randint(1, 10**9) * (1 << 22)
            tweet["referenced_tweets"] = [{"type": kind, "id": str(ref_id)}]
            if kind == "replied_to":
                tweet["conversation_id"] = str(ref_id)
                tweet["in_reply_to_user_id"] = str(self.user_base + rng.randrange(self.n_users))
        if rng.random() < 0.01:
            tweet["note_tweet"] = {"text": text + " " + "long form " * 60}
        if idx % 1000 == 999:  # now and then the API edits history
            tweet["edit_history_tweet_ids"] = [str(tid - (1 << 22)), str(tid)]
        return tweet

    def pages(self, page_size: int) -> Iterator[dict[str, Any]]:
        start = datetime.combine(self.day, time(0), tzinfo=UTC)
        span_ms = 86_400_000 - 1
        n = self.n_tweets
        # Recent search answers newest first; timestamps spread over the day.
        offsets = sorted((self.rng.randrange(span_ms) for _ in range(n)), reverse=True)
        n_pages = max(1, -(-n // page_size))
        previous_last: dict[str, Any] | None = None
        for p in range(n_pages):
            tweets = [
                self.tweet(i, start + timedelta(milliseconds=offsets[i]))
                for i in range(p * page_size, min(n, (p + 1) * page_size))
            ]
            body = self._page(tweets, p)
            if self.hard_cases and p == 1 and previous_last is not None:
                body["data"].append(previous_last)  # the same tweet served on two pages
                body["meta"]["result_count"] = len(body["data"])
            previous_last = tweets[-1] if tweets else None
            if p < n_pages - 1 or self.hard_cases:
                body["meta"]["next_token"] = f"tok{p + 1:06d}"
            yield body
        if self.hard_cases:
            yield {"meta": {"result_count": 0}}  # an empty page closes the day

    def _page(self, tweets: list[dict[str, Any]], page_no: int) -> dict[str, Any]:
        if self.hard_cases and page_no == 0 and tweets:
            # The first tweets have no optional field (as when `tweet.fields` is not asked for).
            tweets[-1] = {"id": tweets[-1]["id"], "text": tweets[-1]["text"], "edit_history_tweet_ids": [tweets[-1]["id"]]}
        user_ids: dict[int, None] = {}
        for t in tweets:
            if "author_id" in t:
                user_ids[int(t["author_id"])] = None
            for m in t.get("entities", {}).get("mentions", ()):
                user_ids[int(m["id"])] = None
        missing_author: int | None = None
        if self.hard_cases and page_no == 0 and len(tweets) > 1:
            # An author the API could not expand: present in data, absent from includes, named in errors.
            missing_author = self.user_base + self.n_users + 1
            tweets[0]["author_id"] = str(missing_author)
        body: dict[str, Any] = {
            "data": tweets,
            "includes": {"users": [self.user(u) for u in user_ids if u != missing_author]},
            "meta": {
                "newest_id": tweets[0]["id"] if tweets else None,
                "oldest_id": tweets[-1]["id"] if tweets else None,
                "result_count": len(tweets),
            },
        }
        refs = [r for t in tweets for r in t.get("referenced_tweets", ())]
        if refs:
            body["includes"]["tweets"] = [
                {"id": r["id"], "text": "referenced post", "author_id": str(self.user_base), "edit_history_tweet_ids": [r["id"]]}
                for r in refs
            ]
        if missing_author is not None:
            body["errors"] = [{
                "value": str(missing_author),
                "detail": f"Could not find user with id: [{missing_author}].",
                "title": "Not Found Error",
                "resource_type": "user",
                "parameter": "author_id",
                "resource_id": str(missing_author),
                "type": "https://api.twitter.com/2/problems/resource-not-found",
            }]
        return body


def generate_pages(
    day: date,
    query: str,
    n_tweets: int,
    *,
    seed: int = 7,
    page_size: int = 100,
    hard_cases: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield recent-search response bodies holding `n_tweets` tweets created on `day` (UTC)."""
    if not 10 <= page_size <= 100:
        raise ValueError("page_size must be between 10 and 100, as the API's max_results")
    yield from _DayGenerator(day, query, n_tweets, seed, hard_cases).pages(page_size)


class SampleSource:
    """Bundled sample pages: same day and query, same pages, so a re-run is byte-identical."""

    name = "sample"

    def __init__(self, tweets_per_query: int = 400, seed: int = 7) -> None:
        self.tweets_per_query, self.seed = tweets_per_query, seed

    def pages(self, query: str, day: date) -> Iterator[FetchedPage]:
        start = datetime.combine(day, time(0), tzinfo=UTC)
        # A fixed "fetched" time (the end of the day) keeps sample rows identical between runs.
        fetched_at = iso(start + timedelta(days=1) - timedelta(milliseconds=1))
        next_token = None
        for body in generate_pages(day, query, self.tweets_per_query, seed=self.seed):
            params = {"query": query, "max_results": MAX_TWEETS_PER_PAGE, "start_time": iso(start),
                      "end_time": iso(start + timedelta(days=1))}
            if next_token:
                params["next_token"] = next_token
            request = {"source": self.name, "endpoint": SEARCH_ENDPOINT, "query": query, "params": params,
                       "fetched_at": fetched_at}
            yield FetchedPage(request=request, body=body)
            next_token = body.get("meta", {}).get("next_token")
