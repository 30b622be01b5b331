"""The X API v2 source: recent search per query and user timelines per account, through tweepy.

Every response body is landed exactly as the API returned it. A run fetches only what is newer than the
query's `since_id` watermark, which lives in the bucket next to the data (`state/x_api/<slug>.json`)
and advances only once the run's pages are landed. An unfinished run (the API failed for longer than
the retries, or a page was not JSON) leaves a cursor there for its day, so the next attempt for that day
resumes at the page after the last landed one; a run for a later day leaves it alone and starts above
the unfinished day's newest landed post. The day's landing record (tasks/lake/land.py) says whether the
day's pages are all landed.

Failures: 429 waits for `x-rate-limit-reset` (bounded) and asks for the same page again; 5xx and
connection errors are retried with exponential backoff and jitter; 401/403/400 raise a
`PermanentSourceError`, which the landing task does not retry. The bearer token is a `SecretStr` and
never reaches a log (tweepy logs request headers at DEBUG: a filter masks the token there).

Pointing tweepy at another host: tweepy 4.17 hard-codes `https://api.twitter.com` in
`Client.request`, but sends through `client.session` (a `requests.Session`). `point_client_at` mounts
a transport adapter for that prefix which rewrites each request's scheme and host before sending, so
`api_base_url="http://127.0.0.1:8080"` (a local test server, a proxy, a recording gateway) receives the
same paths, parameters and headers.
"""

from __future__ import annotations

import logging
import os
import random
import time as clock_time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
import tweepy
from prefect.blocks.system import Secret
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from tasks import run_logger
from tasks.lake.bucket import Bucket
from tasks.lake.land import (
    MAX_TWEETS_PER_PAGE,
    PAGES_PER_FILE,
    UNFINISHED,
    FetchedPage,
    LandedQuery,
    PermanentSourceError,
    error_prefix,
    land_pages,
    mark_unfinished,
    slugify,
    write_landing,
)
from tasks.sources.sample import SEARCH_ENDPOINT, iso, snowflake_time

X_API_HOST = "https://api.twitter.com"
TIMELINE_ENDPOINT = "/2/users/:id/tweets"
TIMELINE_PREFIX = "timeline:@"
TOKEN_ENV = "X_BEARER_TOKEN"
SEARCH_WINDOW = timedelta(days=7)  # recent search only reaches this far back
# Everything tasks/lake/normalize.py reads: tweet fields, the author and mentioned users, referenced posts.
REQUEST_FIELDS: dict[str, str] = {
    "tweet_fields": "id,text,created_at,author_id,conversation_id,lang,in_reply_to_user_id,possibly_sensitive,"
    "edit_history_tweet_ids,public_metrics,note_tweet,referenced_tweets,entities",
    "user_fields": "id,username,name,description,location,created_at,verified,profile_image_url,public_metrics",
    "expansions": "author_id,entities.mentions.username,in_reply_to_user_id,referenced_tweets.id,"
    "referenced_tweets.id.author_id",
}
MAX_RESULTS = MAX_TWEETS_PER_PAGE

T = TypeVar("T")


class XApiAuthError(PermanentSourceError):
    """The API refused the bearer token (401) or its access level (403)."""


class XApiRequestError(PermanentSourceError):
    """The API rejected the request itself (400: a bad query; 404: an unknown account)."""


class XApiUnavailable(RuntimeError):
    """The API kept failing (5xx, connection errors, rate limits) after the request-level retries."""


def timeline_target(username: str) -> str:
    """The query string under which an account's timeline is fetched, landed and recorded."""
    return TIMELINE_PREFIX + username.lstrip("@")


# ---------------------------------------------------------------------------------------------------
# The bearer token


@dataclass(frozen=True)
class BearerToken:
    value: SecretStr
    how_to_fix: str  # names the block or variable to fix, never the value


def bearer_token(block: Secret | None) -> BearerToken:
    """The token from the run's Secret block, or from `X_BEARER_TOKEN` when it names none."""
    if block is not None:
        name = getattr(block, "_block_document_name", None) or "x-bearer-token"
        fix = (f"put a valid X API v2 bearer token in the Prefect Secret block 'secret/{name}' "
               f"(`python -m blocks.create` writes it from {TOKEN_ENV})")
        raw = block.value
        value = raw if isinstance(raw, SecretStr) else SecretStr(str(block.get()))
        return BearerToken(value, fix)
    fix = f"set {TOKEN_ENV} to a valid X API v2 bearer token, or choose a Secret block as the X bearer token"
    env = os.environ.get(TOKEN_ENV, "").strip()
    if not env:
        raise PermanentSourceError(f"no X bearer token: {fix}")
    return BearerToken(SecretStr(env), fix)


class _MaskSecrets(logging.Filter):
    """tweepy logs every request's headers (the `Authorization: Bearer ...` one too) at DEBUG."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "**********")
            record.msg, record.args = message, None
        return True


_MASK = _MaskSecrets()
logging.getLogger("tweepy.client").addFilter(_MASK)


# ---------------------------------------------------------------------------------------------------
# Transport: another host, and a timeout tweepy does not set


class _XApiAdapter(HTTPAdapter):
    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__()
        self.base, self.timeout = (urlsplit(base_url.rstrip("/")) if base_url else None), timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.base is not None:
            url = urlsplit(request.url or "")
            request.url = urlunsplit((self.base.scheme, self.base.netloc, self.base.path + url.path, url.query, ""))
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def point_client_at(client: tweepy.Client, api_base_url: str | None, timeout: float = 60.0) -> None:
    """Send `client`'s requests to `api_base_url` instead of https://api.twitter.com (None: keep the
    host), each with a timeout. Paths, parameters and headers are unchanged."""
    client.session.mount(X_API_HOST, _XApiAdapter(api_base_url, timeout))


# ---------------------------------------------------------------------------------------------------
# State in the bucket


@dataclass
class Cursor:
    """One run's position: its bounds (as sent), the next page to ask for, batches landed so far."""

    tag: str
    bounds: dict[str, str]
    next_token: str | None = None
    batches: int = 0
    newest_id: str | None = None


@dataclass
class QueryState:
    query: str
    since_id: str | None = None
    user_id: str | None = None
    cursors: dict[str, Cursor] = field(default_factory=dict)  # unfinished runs, by day (YYYY-MM-DD)
    updated_at: str | None = None

    @classmethod
    def from_json(cls, data: bytes) -> QueryState:
        doc = orjson.loads(data)
        # A state written before cursors were kept per day has one `cursor` of unknown day: it is dropped;
        # the watermark never moved past its pages, so the next run fetches them again.
        cursors = {d: Cursor(**c) for d, c in (doc.get("cursors") or {}).items()}
        return cls(doc["query"], doc.get("since_id"), doc.get("user_id"), cursors, doc.get("updated_at"))


def state_key(query: str) -> str:
    return f"state/x_api/{slugify(query)}.json"


def read_state(bucket: Bucket, query: str) -> QueryState:
    key = state_key(query)
    return QueryState.from_json(bucket.read(key)) if key in bucket.list(key) else QueryState(query)


def write_state(bucket: Bucket, state: QueryState) -> None:
    state.updated_at = iso(datetime.now(UTC))
    bucket.write(state_key(state.query), orjson.dumps(asdict(state), option=orjson.OPT_INDENT_2))


def _newer(*ids: str | None) -> str | None:
    numbers = [int(x) for x in ids if x]
    return str(max(numbers)) if numbers else None


def _api_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------------
# The source


@dataclass
class _Target:
    query: str
    endpoint: str
    user_id: str | None = None
    username: str | None = None


@dataclass
class XApiSource:
    """Recent search for a query, or an account's timeline for `timeline:@username`, for one day.

    `api_base_url` sends tweepy's requests to another host (see the module docstring);
    `lookback` bounds a query's first run (no watermark yet) inside recent search's 7-day window.
    """

    token: BearerToken
    lookback: timedelta = timedelta(hours=72)
    api_base_url: str | None = None
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_rate_limit_wait: float = 900.0
    timeout: float = 60.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)
    name: str = field(default="x_api", init=False)
    client: tweepy.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not timedelta(0) < self.lookback < SEARCH_WINDOW:
            raise ValueError(f"the X look-back must be between 0 and 168 hours (recent search's window), "
                             f"not {self.lookback.total_seconds() / 3600:g}")
        _MASK.secrets.add(self.token.value.get_secret_value())
        # return_type=requests.Response: the body is landed byte for byte as the API sent it.
        self.client = tweepy.Client(bearer_token=self.token.value.get_secret_value(),
                                    return_type=requests.Response, wait_on_rate_limit=False)
        point_client_at(self.client, self.api_base_url, self.timeout)

    # -- the PageSource protocol: every page of the day, nothing remembered ------------------------
    def pages(self, query: str, day: date) -> Iterator[FetchedPage]:
        target = self._target(query, QueryState(query))
        cursor = self._new_cursor(day, since_id=None)
        if cursor is not None:
            for page, _ in self._fetch(target, cursor):
                yield page

    # -- incremental landing -----------------------------------------------------------------------
    def land(self, bucket: Bucket, query: str, day: date, pages_per_file: int = PAGES_PER_FILE) -> LandedQuery:
        """Land the day's pages newer than the watermark, saving the day's cursor and landing record after
        each batch and advancing the watermark once the last page is in the bucket."""
        log = run_logger(__name__)
        record = mark_unfinished(bucket, self.name, query, day, UNFINISHED)  # the whole day's landings
        state = read_state(bucket, query)
        target = self._target(query, state)
        landed = LandedQuery(self.name, query)  # this run's
        key = day.isoformat()
        cursor = state.cursors.get(key)
        resumed = cursor is not None
        if cursor is not None:
            log.info("%r: resuming the unfinished run of %s at batch %d", query, day, cursor.batches)
        else:
            # Posts up to an earlier unfinished day's newest landed one are left to that day's cursor.
            earlier = (c.newest_id for d, c in state.cursors.items() if d < key)
            cursor = self._new_cursor(day, _newer(state.since_id, *earlier))
            if cursor is None:
                log.info("%r: %s is outside the look-back window; nothing to fetch", query, day)
                return self._finish(bucket, day, record, landed, None)
        bounds = ", ".join(f"{k}={v}" for k, v in cursor.bounds.items())
        log.info("%r: fetching %s with %s", query, target.endpoint, bounds)

        batch: list[FetchedPage] = []
        complete = True

        def flush() -> None:
            if not batch:
                return
            part = land_pages(bucket, self.name, query, day, batch, pages_per_file=len(batch), replace=False,
                              run_tag=f"{cursor.tag}-b{cursor.batches:04d}-")
            landed.add(part)
            record.add(part)
            cursor.batches += 1
            state.cursors[key] = cursor  # a retry resumes after this batch, never refetching it
            write_state(bucket, state)
            write_landing(bucket, day, record)
            batch.clear()

        fetched = 0
        try:
            for page, next_token in self._fetch(target, cursor):
                fetched += 1
                batch.append(page)
                if page.body is None:
                    complete = False  # no next_token to follow: the cursor stays at this page
                    log.warning("%r: a page that is not JSON (%d bytes) was landed under errors/; the "
                                "next run asks for it again", query, len(page.raw_text or ""))
                else:
                    cursor.next_token = next_token
                    cursor.newest_id = _newer(cursor.newest_id, _newest_id(page.body))
                if len(batch) >= pages_per_file:
                    flush()
        except XApiRequestError:
            if not resumed or fetched or not cursor.next_token:
                raise
            # A saved next_token can expire: fetch the day's bounds again from the top (pages landed twice are
            # deduplicated at normalize). Not from the watermark: a later day may have moved it past this day.
            log.warning("%r: the API refused the saved cursor; fetching %s again within %s", query, day,
                        bounds)
            cursor.next_token = None
            write_state(bucket, state)
            return self.land(bucket, query, day, pages_per_file)
        finally:
            flush()  # pages fetched before a failure are landed, and the cursor points after them
        if not complete:
            log.warning("%r: run unfinished; watermark kept at since_id=%s", query, state.since_id)
            where = error_prefix(self.name, query, day)
            return self._finish(bucket, day, record, landed, f"a page that is not JSON was landed under {where}; "
                                f"the next run of {day} asks for it again")
        state.since_id = _newer(state.since_id, cursor.newest_id)
        state.cursors.pop(key, None)
        write_state(bucket, state)
        log.info("%r: watermark now since_id=%s", query, state.since_id)
        return self._finish(bucket, day, record, landed, None)

    def _finish(self, bucket: Bucket, day: date, record: LandedQuery, landed: LandedQuery,
                missing: str | None) -> LandedQuery:
        """Write the day's landing record: complete unless `missing` says what is not landed yet."""
        for each in (record, landed):
            each.complete, each.reason = missing is None, missing
        write_landing(bucket, day, record)
        return landed

    # -- internals ---------------------------------------------------------------------------------
    def _new_cursor(self, day: date, since_id: str | None) -> Cursor | None:
        """Bounds for a new run: after the watermark (or the look-back), up to the day's end."""
        now = self.clock()
        day_start = datetime.combine(day, time(0), tzinfo=UTC)
        day_end = day_start + timedelta(days=1)
        bounds: dict[str, str] = {}
        if day_end < now - timedelta(seconds=30):  # the API wants end_time at least 10 s in the past
            bounds["end_time"] = _api_time(day_end)
        if since_id and snowflake_time(int(since_id)) > now - SEARCH_WINDOW + timedelta(minutes=5):
            bounds["since_id"] = since_id
            return Cursor(tag=f"since-{since_id}", bounds=bounds)
        if since_id:
            run_logger(__name__).warning("watermark %s is older than recent search's 7 days; starting at the look-back",
                              since_id)
        start = max(day_start, now - self.lookback).replace(microsecond=0)
        if start >= min(day_end, now):
            return None
        bounds["start_time"] = _api_time(start)
        return Cursor(tag=f"start-{start:%Y%m%dT%H%M%S}", bounds=bounds)

    def _target(self, query: str, state: QueryState) -> _Target:
        if not query.startswith(TIMELINE_PREFIX):
            return _Target(query, SEARCH_ENDPOINT)
        username = query.removeprefix(TIMELINE_PREFIX)
        if state.user_id is None:  # resolved once; the id is kept in the account's state
            response = self._call(lambda: self.client.get_user(username=username), f"looking up @{username}")
            body = orjson.loads(response.content)
            if "data" not in body:
                detail = "; ".join(e.get("detail", "") for e in body.get("errors", ())) or "no such user"
                raise XApiRequestError(f"X account @{username} was not found ({detail}): check the accounts")
            state.user_id = body["data"]["id"]
        return _Target(query, TIMELINE_ENDPOINT, state.user_id, username)

    def _fetch(self, target: _Target, cursor: Cursor) -> Iterator[tuple[FetchedPage, str | None]]:
        """Each response with the token of the page after it, following `meta.next_token`.

        tweepy's Paginator accepts `requests.Response` (it reads `meta` from the parsed body) and
        advances its token only after a successful response, so asking it again after a 429 or 5xx
        asks for the same page.
        """
        log = run_logger(__name__)
        if target.user_id is None:
            method, args, token_param = self.client.search_recent_tweets, (target.query,), "next_token"
        else:
            method, args, token_param = self.client.get_users_tweets, (target.user_id,), "pagination_token"
        paginator = iter(tweepy.Paginator(method, *args, pagination_token=cursor.next_token,
                                          max_results=MAX_RESULTS, **REQUEST_FIELDS, **cursor.bounds))
        token, pages, tweets = cursor.next_token, 0, 0
        while True:
            params = {"max_results": MAX_RESULTS, **cursor.bounds}
            if token:
                params[token_param] = token
            request = {"source": self.name, "endpoint": target.endpoint, "query": target.query,
                       "params": params, "fetched_at": iso(datetime.now(UTC))}
            if target.user_id:
                request["user_id"] = target.user_id
            what = f"{target.query!r} page {pages + 1}"
            try:
                response = self._call(lambda: next(paginator, None), what)
            except requests.JSONDecodeError as exc:
                # The Paginator parses each body for its token; this one did not parse: keep it as sent.
                yield FetchedPage(request, None, 200, exc.doc), token
                return
            if response is None:
                return
            body = orjson.loads(response.content)
            page = FetchedPage(request, body, response.status_code)
            pages, tweets = pages + 1, tweets + page.tweet_count
            log.info("%r: page %d, %d tweets (%d so far)%s", target.query, pages, page.tweet_count, tweets,
                     f", {page.api_error_count} partial errors" if page.api_error_count else "")
            token = (body.get("meta") or {}).get("next_token")
            yield page, token
            if token is None:
                return

    def _call(self, request: Callable[[], T], what: str) -> T:
        """`request()`, waiting out rate limits and retrying server and connection errors.

        Hand-written because tweepy's `wait_on_rate_limit` sleeps without a bound or a run log and
        retries no 5xx, and urllib3's `Retry` would hide the waits from the Prefect run's log.
        """
        log = run_logger(__name__)
        failures = rate_limited = 0
        while True:
            try:
                return request()
            except tweepy.TooManyRequests as exc:
                rate_limited += 1
                if rate_limited > self.max_attempts:
                    raise XApiUnavailable(f"X API still rate-limits {what} after {self.max_attempts} waits") from None
                reset = exc.reset_time or clock_time.time() + 60
                wait = min(max(reset - clock_time.time(), 0) + 1, self.max_rate_limit_wait)
                log.warning("rate limited on %s: waiting %.1f s for x-rate-limit-reset (%s)", what, wait,
                            iso(datetime.fromtimestamp(reset, UTC)))
                clock_time.sleep(wait)
            except (tweepy.TwitterServerError, requests.ConnectionError, requests.Timeout) as exc:
                failures += 1
                reason = _reason(exc)
                if failures >= self.max_attempts:
                    raise XApiUnavailable(f"X API failed {failures} times on {what}: {reason}") from None
                delay = self.backoff_seconds * 2 ** (failures - 1) * random.uniform(1.0, 1.5)
                log.warning("%s failed (%s); retry %d of %d in %.1f s", what, reason, failures,
                            self.max_attempts - 1, delay)
                clock_time.sleep(delay)
            except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
                meaning = ("the bearer token was rejected" if isinstance(exc, tweepy.Unauthorized)
                           else "the token's app or plan has no access to this endpoint")
                raise XApiAuthError(f"X API answered {_reason(exc)} on {what}: {meaning}. "
                                    f"To fix: {self.token.how_to_fix}") from None
            except (tweepy.BadRequest, tweepy.NotFound) as exc:
                raise XApiRequestError(f"X API rejected {what}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, tweepy.HTTPException):
        status = f"{exc.response.status_code} {exc.response.reason}"
        return f"{status}: {'; '.join(exc.api_messages)}" if exc.api_messages else status
    return type(exc).__name__  # connection errors: their text repeats the whole URL


def _newest_id(body: dict[str, Any]) -> str | None:
    ids = [int(t["id"]) for t in body.get("data") or () if str(t.get("id", "")).isdigit()]
    return str(max(ids)) if ids else None
