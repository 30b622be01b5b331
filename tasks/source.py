"""Page sources: where the day's raw pages come from.

Each source yields `FetchedPage`s for one query and day. `sample` is the embedded default (the
deterministic generator in `tasks.sample`); the X API v2 source lives in `tasks.x_api`; `replay`
fetches nothing and re-reads the pages already landed in the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from dataclasses import dataclass
from typing import Any, Protocol

from tasks.sample import SEARCH_ENDPOINT, generate_pages, iso

SOURCES = ("sample", "x_api", "replay")


@dataclass
class FetchedPage:
    """One answer of the source: a parsed body, or the raw text of a body that did not parse."""

    request: dict[str, Any]
    body: dict[str, Any] | None
    status: int = 200
    raw_text: str | None = None

    @property
    def tweet_count(self) -> int:
        return len((self.body or {}).get("data") or ())

    @property
    def api_error_count(self) -> int:
        return len((self.body or {}).get("errors") or ())


class PageSource(Protocol):
    name: str

    def pages(self, query: str, day: date) -> Iterator[FetchedPage]: ...


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
            params = {"query": query, "max_results": 100, "start_time": iso(start),
                      "end_time": iso(start + timedelta(days=1))}
            if next_token:
                params["next_token"] = next_token
            request = {"source": self.name, "endpoint": SEARCH_ENDPOINT, "query": query, "params": params,
                       "fetched_at": fetched_at}
            yield FetchedPage(request=request, body=body)
            next_token = body.get("meta", {}).get("next_token")
