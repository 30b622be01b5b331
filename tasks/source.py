"""Page sources: where the day's raw pages come from.

Each source yields `FetchedPage`s for one query and day. `sample` is the embedded default (the
deterministic generator in `tasks.sample`); the X API v2 source lives in `tasks.x_api`; `replay`
fetches nothing and re-reads the pages already landed in the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tasks.sample import SEARCH_ENDPOINT, generate_pages, iso

if TYPE_CHECKING:
    from tasks.bucket import Bucket
    from tasks.land import LandedQuery

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


class PermanentSourceError(RuntimeError):
    """A source failure no retry can fix (a rejected token, a bad query): the task fails at once."""


class PageSource(Protocol):
    name: str

    def pages(self, query: str, day: date) -> Iterator[FetchedPage]: ...


@runtime_checkable
class WatermarkedSource(Protocol):
    """A source that fetches only what is new since its stored watermark (the X API source).

    It lands its own batches, because the watermark may only advance once a batch is in the bucket.
    """

    name: str

    def pages(self, query: str, day: date) -> Iterator[FetchedPage]: ...

    def land(self, bucket: Bucket, query: str, day: date, pages_per_file: int) -> LandedQuery: ...


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
