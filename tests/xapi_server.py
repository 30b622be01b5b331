"""A local X API v2 server on 127.0.0.1 for the tests: tweepy talks to it over HTTP.

It serves recent search (`/2/tweets/search/recent`), user lookup (`/2/users/by/username/:name`) and
user timelines (`/2/users/:id/tweets`) from tweets made by `tasks.sources.sample.generate_pages`, newest first,
with `includes.users`, `includes.tweets`, partial `errors` for authors it cannot expand, and the
`x-rate-limit-*` headers. It honours `since_id`, `start_time`, `end_time`, `max_results` and
`next_token`/`pagination_token`, checks the bearer token, logs every request, and can be scripted to
answer the n-th request with 429, a 5xx, 401, 403, 400 or a body that is not JSON.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from tasks.sources.sample import generate_pages, snowflake_time

SEARCH_PATH = "/2/tweets/search/recent"
RATE_LIMIT = 450
MALFORMED = b'{"data": [{"id": "1", "text": "cut off in the mid'


@dataclass
class LoggedRequest:
    path: str
    params: dict[str, str]
    status: int = 0
    authorized: bool = False


@dataclass
class Scripted:
    status: int
    reset_in: int = 1  # 429: seconds until x-rate-limit-reset
    body: bytes | None = None


@dataclass
class _Corpus:
    tweets: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> tweet


class XApiServer:
    def __init__(self, token: str = "local-test-bearer-token") -> None:
        self.token = token
        self.searches: dict[str, _Corpus] = {}
        self.timelines: dict[str, _Corpus] = {}  # user id -> corpus
        self.accounts: dict[str, str] = {}  # username -> user id
        self.users: dict[str, dict[str, Any]] = {}
        self.referenced: dict[str, dict[str, Any]] = {}
        self.log: list[LoggedRequest] = []
        self.script: dict[int, Scripted] = {}
        self.requests_seen = 0  # numbers requests for `fail`; clearing `log` does not reset it
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- the test's side --------------------------------------------------------------------------
    def start(self) -> XApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def publish(self, query: str, day: date, n_tweets: int, seed: int = 7) -> set[str]:
        """Make `n_tweets` posts of `day` match `query`; returns their ids."""
        return self._add(self.searches.setdefault(query, _Corpus()), day, query, n_tweets, seed)

    def publish_timeline(self, username: str, day: date, n_tweets: int, seed: int = 7) -> set[str]:
        """Give the account `username` (created if new) `n_tweets` posts on `day`; returns their ids."""
        user_id = self.accounts.setdefault(username, str(900_000_000 + len(self.accounts)))
        self.users[user_id] = {"id": user_id, "username": username, "name": username.title()}
        ids = self._add(self.timelines.setdefault(user_id, _Corpus()), day, f"from:{username}", n_tweets, seed)
        for tweet_id in ids:
            self.timelines[user_id].tweets[tweet_id]["author_id"] = user_id
        return ids

    def fail(self, status: int, *, on_request: int, reset_in: int = 1, body: bytes | None = None) -> None:
        """Answer the `on_request`-th request since the start (1-based, all paths) with `status`; 200
        with `body` (default: cut-off JSON) answers a malformed page."""
        self.script[on_request] = Scripted(status, reset_in, MALFORMED if status == 200 and body is None else body)

    def requests_to(self, path_start: str) -> list[LoggedRequest]:
        return [r for r in self.log if r.path.startswith(path_start)]

    def _add(self, corpus: _Corpus, day: date, query: str, n: int, seed: int) -> set[str]:
        added = set()
        for page in generate_pages(day, query, n, seed=seed):
            for user in page.get("includes", {}).get("users", ()):
                self.users[user["id"]] = user
            for ref in page.get("includes", {}).get("tweets", ()):
                self.referenced[ref["id"]] = ref
            for tweet in page.get("data", ()):
                corpus.tweets[tweet["id"]] = tweet
                added.add(tweet["id"])
        return added

    # -- the API's side ---------------------------------------------------------------------------
    def answer(self, path: str, params: dict[str, str], authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            entry = LoggedRequest(path, params, authorized=authorization == f"Bearer {self.token}")
            self.log.append(entry)
            self.requests_seen += 1
            number, scripted = self.requests_seen, self.script.get(self.requests_seen)
        status, headers, body = self._route(path, params, entry.authorized, scripted)
        remaining = max(RATE_LIMIT - number, 0)
        headers = {"x-rate-limit-limit": str(RATE_LIMIT), "x-rate-limit-remaining": str(remaining),
                   "x-rate-limit-reset": str(int(time.time()) + 900), **headers}
        entry.status = status
        return status, headers, body

    def _route(self, path: str, params: dict[str, str], authorized: bool,
               scripted: Scripted | None) -> tuple[int, dict[str, str], bytes]:
        if scripted is not None:
            return self._scripted(scripted)
        if not authorized:
            return _problem(401, "Unauthorized", "Unauthorized")
        if path == SEARCH_PATH:
            query = params.get("query", "")
            if not query or query.count("(") != query.count(")"):
                return _invalid("query", f"There were errors processing your request: "
                                         f"Ambiguous use of parentheses in query {query!r}")
            return self._page(self.searches.get(query, _Corpus()), params, "next_token", 10)
        parts = path.strip("/").split("/")
        if parts[:3] == ["2", "users", "by"] and len(parts) == 5 and parts[3] == "username":
            user_id = self.accounts.get(parts[4])
            if user_id is None:
                return 200, {}, orjson.dumps({"errors": [{
                    "value": parts[4], "detail": f"Could not find user with username: [{parts[4]}].",
                    "title": "Not Found Error", "resource_type": "user", "parameter": "username",
                    "type": "https://api.twitter.com/2/problems/resource-not-found"}]})
            return 200, {}, orjson.dumps({"data": self.users[user_id]})
        if parts[:2] == ["2", "users"] and len(parts) == 4 and parts[3] == "tweets":
            return self._page(self.timelines.get(parts[2], _Corpus()), params, "pagination_token", 5)
        return _problem(404, "Not Found Error", f"no route {path}")

    def _scripted(self, s: Scripted) -> tuple[int, dict[str, str], bytes]:
        if s.status == 200:
            return 200, {}, s.body or MALFORMED
        if s.status == 429:
            reset = str(int(time.time()) + s.reset_in)
            status, _, body = _problem(429, "Too Many Requests", "Too Many Requests")
            return status, {"x-rate-limit-remaining": "0", "x-rate-limit-reset": reset}, body
        if s.status == 400:
            return _invalid("query", "There were errors processing your request: scripted bad request")
        titles = {401: "Unauthorized", 403: "Forbidden", 500: "Internal Server Error", 502: "Bad Gateway",
                  503: "Service Unavailable"}
        title = titles.get(s.status, "Error")
        return _problem(s.status, title, title)

    def _page(self, corpus: _Corpus, params: dict[str, str], token_param: str,
              min_results: int) -> tuple[int, dict[str, str], bytes]:
        max_results = int(params.get("max_results", "10"))
        if not min_results <= max_results <= 100:
            return _invalid("max_results", f"The `max_results` query parameter value [{max_results}] is not "
                                           f"between {min_results} and 100")
        matching = sorted(corpus.tweets.values(), key=lambda t: int(t["id"]), reverse=True)
        if "since_id" in params:
            matching = [t for t in matching if int(t["id"]) > int(params["since_id"])]
        if "start_time" in params:
            matching = [t for t in matching if _created(t) >= _ts(params["start_time"])]
        if "end_time" in params:
            matching = [t for t in matching if _created(t) < _ts(params["end_time"])]
        offset = 0
        if params.get(token_param):
            try:
                offset = int(base64.urlsafe_b64decode(params[token_param]).decode().removeprefix("offset:"))
            except ValueError:
                return _invalid(token_param, f"The `{token_param}` query parameter value is not valid")
        tweets = matching[offset: offset + max_results]
        if not tweets:
            return 200, {}, orjson.dumps({"meta": {"result_count": 0}})
        body: dict[str, Any] = {"data": tweets, "includes": {}, "meta": {
            "newest_id": tweets[0]["id"], "oldest_id": tweets[-1]["id"], "result_count": len(tweets)}}
        if offset + max_results < len(matching):
            body["meta"]["next_token"] = base64.urlsafe_b64encode(f"offset:{offset + max_results}".encode()).decode()
        user_ids = dict.fromkeys(
            [t["author_id"] for t in tweets if "author_id" in t]
            + [m["id"] for t in tweets for m in t.get("entities", {}).get("mentions", ())]
        )
        body["includes"]["users"] = [self.users[u] for u in user_ids if u in self.users]
        refs = [self.referenced[r["id"]] for t in tweets for r in t.get("referenced_tweets", ())
                if r["id"] in self.referenced]
        if refs:
            body["includes"]["tweets"] = refs
        missing = [u for u in user_ids if u not in self.users]
        if missing:  # as the API does for an author it cannot expand: a partial error in a 200 page
            body["errors"] = [{
                "value": u, "detail": f"Could not find user with id: [{u}].", "title": "Not Found Error",
                "resource_type": "user", "parameter": "author_id", "resource_id": u,
                "type": "https://api.twitter.com/2/problems/resource-not-found"} for u in missing]
        return 200, {}, orjson.dumps(body)


def _created(tweet: dict[str, Any]) -> datetime:
    return snowflake_time(int(tweet["id"]))  # also for posts served without `created_at`


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)  # Python 3.11+ reads the trailing Z


def _problem(status: int, title: str, detail: str) -> tuple[int, dict[str, str], bytes]:
    return status, {}, orjson.dumps({"title": title, "detail": detail, "type": "about:blank", "status": status})


def _invalid(parameter: str, message: str) -> tuple[int, dict[str, str], bytes]:
    return 400, {}, orjson.dumps({
        "errors": [{"parameters": {parameter: []}, "message": message}],
        "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request"})


def _handler(server: XApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # http.server's naming
            url = urlsplit(self.path)
            status, headers, body = server.answer(url.path, dict(parse_qsl(url.query)),
                                                  self.headers.get("Authorization"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the request log is `server.log`
            pass

    return Handler
