"""The dashboard as a reader sees it: rendered by headless Chromium, checked over the DevTools protocol.

Chromium (Debian's `chromium`, installed by `.ci/run` when missing) loads the file with every host
name unresolvable; the test records console errors, uncaught exceptions and every request the page
makes, reads what each section drew from the DOM, and saves a full-page screenshot under
`test-artifacts/`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from websockets.sync.client import connect

from flows.daily import daily
from flows.settings import PipelineSettings
from tasks.analytics.analyze import analyze_day
from tasks.analytics.dashboard import (
    ARTIFACT_KEY,
    SECTIONS,
    DashboardData,
    asset_key,
    build_pages,
    publish_pages,
    render_dashboard,
    write_dashboard,
)
from tasks.analytics.pages import INDEX_SECTIONS, plotly_asset_name
from tasks.warehouse.base import DuckDBWarehouse
from tests.tasks.analytics.test_analyze import _default_field_pages, _load

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-proxy-server", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # any attempt to reach a host fails, and is recorded below
]
# What each section shows a reader: only what is visible counts (a query filter hides the other variants).
PAGE_STATE_JS = """(() => {
const visible = e => e.getClientRects().length > 0;
const all = (s, sel) => [...s.querySelectorAll(sel)].filter(visible);
return JSON.stringify(Object.fromEntries([...document.querySelectorAll('main > section')].map(s => [s.id, {
  plots: all(s, '.js-plotly-plot').length,
  drawn: all(s, '.js-plotly-plot').filter(p => p.querySelector('.main-svg .trace, .main-svg .slice')).length,
  empty: all(s, '.empty').length,
  empty_text: all(s, '.empty').map(e => e.innerText),
  cards: all(s, '.card').map(c => c.innerText),
  rows: s.querySelectorAll('tbody tr').length,
  links: [...s.querySelectorAll('tbody a[href]')].map(a => a.getAttribute('href')),
  text: s.innerText,
}])));
})()"""
DRAWN_JS = "document.querySelectorAll('.js-plotly-plot .main-svg .trace, .js-plotly-plot .main-svg .slice').length"


@dataclass
class Rendered:
    sections: dict[str, dict[str, Any]]
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    page: str = ""  # "day" or "index"
    day: str = ""
    nav: str = ""


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol (websocket on loopback)."""

    def __init__(self, workdir: Path, loopback: bool = False) -> None:
        """`loopback`: 127.0.0.1 stays reachable (for a test's own HTTP server); every host name still fails."""
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail("chromium is not installed: run .ci/run, or `apt-get install -y chromium`")
        profile = workdir / "chromium-profile"
        profile.mkdir()
        flags = [f"{f}, EXCLUDE 127.0.0.1" if loopback and f.startswith("--host-resolver-rules") else f
                 for f in CHROMIUM_FLAGS]
        self.proc = subprocess.Popen(
            [binary, *flags, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                pytest.fail("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.load(no_proxy.open(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, proxy=None, open_timeout=10)
        self.next_id = 0
        self.events: list[dict] = []
        self.started = False

    def send(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def render(self, path: Path, screenshot: Path, width: int = 1400) -> Rendered:
        """Open `path`, read what every section shows, save a full-page screenshot."""
        rendered = self.open(path, width)
        self.screenshot(screenshot, width)
        return rendered

    def open(self, path: Path | str, width: int = 1400) -> Rendered:
        """Open a file, or a URL (`str`), and read what every section shows."""
        if not self.started:
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable")
            self.started = True
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=1000, deviceScaleFactor=1, mobile=False)
        self.events.clear()
        self.send("Page.navigate", url=path if isinstance(path, str) else path.resolve().as_uri())
        return self._loaded()

    def follow(self, selector: str) -> Rendered:
        """Click the link `selector` as a reader would, and read the page it leads to."""
        self.events.clear()
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        return self._loaded()

    def _loaded(self) -> Rendered:
        self.wait_for("Page.loadEventFired")
        self.settle()
        rendered = Rendered(json.loads(self.evaluate(PAGE_STATE_JS)))
        rendered.page = self.evaluate("document.querySelector('main').dataset.page")
        rendered.day = self.evaluate("document.querySelector('main').dataset.day")
        rendered.nav = self.evaluate("document.querySelector('nav').innerText")
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                rendered.console_errors.append(json.dumps(params["args"])[:500])
            elif method == "Runtime.exceptionThrown":
                rendered.console_errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                rendered.console_errors.append(params["entry"]["text"])
            elif method == "Network.requestWillBeSent":
                rendered.requests.append(params["request"]["url"])
        return rendered

    def settle(self) -> None:
        """plotly finishes drawing asynchronously: wait until the number of drawn plots stops changing."""
        drawn, deadline = -1, time.monotonic() + 30
        while time.monotonic() < deadline:
            now = self.evaluate(DRAWN_JS)
            if now == drawn:
                break
            drawn = now
            time.sleep(0.5)

    def screenshot(self, path: Path, width: int = 1400) -> None:
        height = math.ceil(self.send("Page.getLayoutMetrics")["cssContentSize"]["height"])
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=1000, deviceScaleFactor=1, mobile=False)

    def close(self) -> None:
        """Stop chromium and every helper process it forked (renderer, GPU, crashpad).

        Terminating only the browser process left helpers writing into the profile while the temporary
        directory was being removed ("Directory not empty: 'Default'"), so the whole session is stopped
        and waited for.
        """
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    return
                self.proc.poll()  # reap the browser process; helpers are reaped by init
                time.sleep(0.1)


def render_in_chromium(path: Path, screenshot: Path) -> Rendered:
    with tempfile.TemporaryDirectory(prefix="x-pipeline-chromium-") as workdir:
        browser = Chromium(Path(workdir))
        try:
            return browser.render(path, screenshot)
        finally:
            browser.close()


def _assert_offline_and_clean(rendered: Rendered, page: Path) -> None:
    """No console error, and no request but the page and the shared plotly.js beside it (files, no network)."""
    assert rendered.console_errors == []
    asset = (page.resolve().parent / plotly_asset_name()).as_uri()
    assert rendered.requests == [page.resolve().as_uri(), asset]


def _chart(browser: Chromium, name: str) -> dict[str, Any]:
    """What plotly drew in the chart `name`: its traces' x and y, and the layout's shapes."""
    return json.loads(browser.evaluate(
        f"(() => {{ const d = document.getElementById('chart-{name}');"
        " return JSON.stringify({data: d.data.map(t => ({name: t.name, x: t.x, y: t.y})), shapes: d.layout.shapes}); })()"
    ))


def test_seven_days_with_one_missing_navigate_and_show_the_gap(prefect_server: None, tmp_path: Path, day: date) -> None:
    """Six daily runs over seven days (`missing` never runs; the day before the newest is a late backfill):
    the index and every day page are small, link to each other, and the trends show the missing day as a
    gap; Chromium finds no console error and no request beyond the files."""
    queries = ["#DataEng", "prefect polars"]
    missing = day - timedelta(days=3)
    days = [day - timedelta(days=n) for n in (6, 5, 4, 2, 0, 1)]
    for d in days:
        summary = daily(day=d, settings=PipelineSettings(queries=queries, sample_tweets=120, local_root=str(tmp_path)))
    assert Path(summary.extra["dashboard"]) == (tmp_path / "dashboard" / f"dt={day - timedelta(days=1)}.html").resolve()

    lake, local = tmp_path / "lake" / "dashboard", tmp_path / "dashboard"
    expected = sorted([*(f"dt={d}.html" for d in days), "index.html", plotly_asset_name()])
    for folder in (lake, local):
        assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == expected
        assert all((folder / f"dt={d}.html").read_bytes() == (lake / f"dt={d}.html").read_bytes() for d in days)
    sizes = {p.name: p.stat().st_size for p in lake.glob("*.html")}
    print("page sizes:", sizes)
    assert max(sizes.values()) < 200_000, sizes  # plotly.js (4.8 MB) is one shared asset, not in every page
    assert (lake / plotly_asset_name()).stat().st_size > 1_000_000

    with tempfile.TemporaryDirectory(prefix="x-pipeline-chromium-") as workdir:
        browser = Chromium(Path(workdir))
        try:
            index = browser.render(local / "index.html", ARTIFACTS / "dashboard-index.png")
            _assert_offline_and_clean(index, local / "index.html")
            assert (index.page, index.day) == ("index", day.isoformat())
            s = index.sections
            assert list(s) == list(INDEX_SECTIONS)
            assert f"From {day - timedelta(days=6)} to {day}: 6 days with data, 1 without" in s["days"]["text"]
            assert browser.evaluate("[...document.querySelectorAll('.day.missing')].map(e => e.dataset.day)") == [
                missing.isoformat()]
            for sid in ("kpi-trends", "volume-trend", "hashtag-trends", "mention-trends"):
                assert (s[sid]["plots"], s[sid]["drawn"]) == (1, 1), sid
            assert s["rising"]["rows"] > 0

            # A true date axis: every day of the window on it, the missing one a gap (null) under a grey band.
            window = [(day - timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
            trends = _chart(browser, "kpi-trends")
            tweets = trends["data"][0]
            assert tweets["x"] == window
            assert [y is None for y in tweets["y"]] == [d == missing.isoformat() for d in window]
            assert [y for y in tweets["y"] if y is not None] == [240] * 6
            bands = {sh["x0"][:10] for sh in trends["shapes"]}
            assert bands == {(missing - timedelta(days=1)).isoformat()}  # the band spans the day +-12 h
            assert all(trace["y"][window.index(missing.isoformat())] is None
                       for trace in _chart(browser, "hashtag-trends")["data"])

            # From the index to the newest day, back through every day to the first, and forward again.
            newest = browser.follow("a[rel=last]")
            pages = [newest]
            while browser.evaluate("document.querySelector('a[rel=prev]') !== null"):
                pages.append(browser.follow("a[rel=prev]"))
            assert [p.day for p in pages] == [(day - timedelta(days=n)).isoformat() for n in (0, 1, 2, 4, 5, 6)]
            forward = [browser.follow("a[rel=next]") for _ in range(5)]
            assert [p.day for p in forward] == [(day - timedelta(days=n)).isoformat() for n in (5, 4, 2, 1, 0)]
            back_to_index = browser.follow("a[rel=index]")
            assert back_to_index.page == "index"
            for page in [*pages, *forward, back_to_index]:
                assert page.console_errors == [], page.day
                assert all(url.startswith(local.resolve().as_uri() + "/") for url in page.requests), page.requests

            after_gap = next(p for p in pages if p.day == (day - timedelta(days=2)).isoformat())
            assert f"← {day - timedelta(days=4)}\n1 day without data between" in after_gap.nav
            d = browser.follow("a[rel=last]")
            assert d.day == day.isoformat()
            s = d.sections
            assert list(s) == list(SECTIONS)
            assert all(sec["empty"] == 0 for sec in s.values()), {k: v["empty_text"] for k, v in s.items()}
            assert len(s["headline"]["cards"]) == 8
            tweets_card = s["headline"]["cards"][0]
            assert "240" in tweets_card and "+0 (+0.0%) vs previous day" in tweets_card  # 2 queries x 120
            # Sparklines: the window's line, broken at the day without data.
            assert browser.evaluate("document.querySelector('.card[data-metric=tweets] .spark').dataset.missing") == \
                missing.isoformat()
            expected_plots = {"volume": 2, "hashtags": 1, "mentions-domains": 2, "authors": 1, "sentiment": 1,
                              "languages": 1}
            assert {k: (s[k]["plots"], s[k]["drawn"]) for k in expected_plots} == {
                k: (n, n) for k, n in expected_plots.items()}
            assert s["authors"]["rows"] == 10 and s["top-tweets"]["rows"] == 10
            assert all(re.fullmatch(r"https://x\.com/i/web/status/\d+", link) for link in s["top-tweets"]["links"])
            volume = _chart(browser, "volume-daily")
            assert [t["name"] for t in volume["data"]] == queries and volume["data"][0]["x"] == window

            # The query filter: one query's cards and charts; the choice follows the links.
            browser.evaluate("(() => { const s = document.getElementById('query-filter'); s.value = '#DataEng';"
                             " s.dispatchEvent(new Event('change')); })()")
            browser.settle()
            state = json.loads(browser.evaluate(PAGE_STATE_JS))
            assert len(state["headline"]["cards"]) == 6 and state["headline"]["cards"][0].startswith("Tweets\n120")
            assert [t["name"] for t in _chart(browser, "volume-daily")["data"]] == ["#DataEng"]
            previous = browser.follow("a[rel=prev]")
            assert previous.console_errors == []
            assert browser.evaluate("document.getElementById('query-filter').value") == "#DataEng"
            assert len(previous.sections["headline"]["cards"]) == 6
            browser.screenshot(ARTIFACTS / "dashboard-day-filtered.png")
        finally:
            browser.close()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
    # The shared link follows the newest day: the late backfill of the day before did not move it.
    assert any((local / "index.html").resolve().as_uri() in str(a.data) for a in artifacts)


def _publish(tmp_path: Path, day: date, bucket, frames: list[dict] | None = None) -> Path:
    """Load `frames` into a DuckDB warehouse, analyze `day`, write its pages; the local day page."""
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    try:
        warehouse.ensure_tables()
        for f in frames or []:
            _load(warehouse, f)
        analyze_day(warehouse, day)
        copies = write_dashboard(build_pages(warehouse, day), bucket, tmp_path / "dashboard")
    finally:
        warehouse.close()
    return copies[f"dashboard/dt={day}.html"]


def test_a_day_without_tweets_says_so_in_every_section(tmp_path: Path, day: date, local_bucket) -> None:
    page = _publish(tmp_path, day, local_bucket)

    rendered = render_in_chromium(page, ARTIFACTS / "dashboard-empty.png")
    _assert_offline_and_clean(rendered, page)
    assert list(rendered.sections) == list(SECTIONS)
    for sid, sec in rendered.sections.items():
        assert sec["empty"] >= 1 and sec["plots"] == 0, sid
    assert "no data for the previous day (2026-11-23)" in rendered.sections["headline"]["cards"][0]


def test_default_field_tweets_show_unknown_where_inputs_are_missing(tmp_path: Path, day: date, local_bucket) -> None:
    """Tweets as the X API sends them without tweet.fields (id, text): what needs a missing field reads
    "unknown" and each section says why, never a zero or empty axes."""
    page = _publish(tmp_path, day, local_bucket, [_default_field_pages(day, range(1, 341))])

    rendered = render_in_chromium(page, ARTIFACTS / "dashboard-default-fields.png")
    _assert_offline_and_clean(rendered, page)
    s = rendered.sections
    cards = {c.split("\n")[0]: c.split("\n")[1:] for c in s["headline"]["cards"]}
    assert cards["Tweets"][0] == "340"
    for label, why in (("Authors", "author_id"), ("Engagement", "public_metrics"), ("Replies", "referenced_tweets"),
                       ("Quotes", "referenced_tweets"), ("Retweets", "referenced_tweets"),
                       ("Positive (English)", "a language"), ("Mean sentiment", "a language")):
        assert cards[label][0] == "unknown", (label, cards[label])
        assert f"unknown: no tweet carries {why}" in cards[label], (label, cards[label])
    assert "0.0%" not in s["headline"]["text"]
    for sid in ("volume", "hashtags", "mentions-domains", "rising", "authors", "sentiment", "languages"):
        assert s[sid]["drawn"] == s[sid]["plots"], sid  # no empty axes
        assert any("Unknown" in t for t in s[sid]["empty_text"]), (sid, s[sid]["empty_text"])
    # The language is missing: not "340 in other languages".
    assert "0 in other languages are not scored; 340 carry no language" in s["sentiment"]["text"]
    assert s["top-tweets"]["rows"] == 10 and "Engagement unknown" in s["top-tweets"]["text"]
    assert all(row.split("\t")[-2] == "unknown" for row in s["top-tweets"]["text"].splitlines() if "open" in row)


def test_text_from_the_data_is_escaped(day: date) -> None:
    hostile = '<img src=x onerror="alert(1)"></script><b>'
    data = DashboardData(
        day=day,
        days=[day],
        daily=[{"dt": day, "tweets": 1, "authors": 1, "engagement": 3, "reply_share": 0.0, "quote_share": 0.0,
                "retweet_share": 0.0, "scored_tweets": 0, "not_scored_tweets": 1, "positive_tweets": 0,
                "neutral_tweets": 0, "negative_tweets": 0, "mean_compound": None, "positive_share": None}],
        volume_daily=[{"dt": day, "query": hostile, "tweets": 1}, {"dt": day, "query": "q2", "tweets": 1}],
        hashtags=[{"dt": day, "value": hostile, "hashtag": hostile, "occurrences": 1, "tweets": 1, "rank": 1}],
        top_tweets=[{"tweet_id": 7, "created_at": None, "author_id": None, "username": hostile, "lang": None,
                     "text": hostile, "like_count": 3, "retweet_count": 0, "reply_count": 0, "quote_count": 0,
                     "engagement": 3, "sentiment": "not scored", "url": "https://x.com/i/web/status/7"}],
    )
    page = render_dashboard(data)
    body = page[page.index("<body>"):]
    assert hostile not in body and "<img" not in body and "</script><b>" not in body
    assert html.escape(hostile, quote=True) in body


def test_publishing_an_older_day_keeps_the_index_on_the_newest(
    tmp_path: Path, day: date, local_bucket, sample_frames
) -> None:
    older = day - timedelta(days=3)
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    try:
        warehouse.ensure_tables()
        for d in (day, older):
            _load(warehouse, sample_frames(d, 30, query=f"q {d}"))
            analyze_day(warehouse, d)
        pages = build_pages(warehouse, older)
    finally:
        warehouse.close()
    # The older day's page, its newer neighbour's (which now links back to it), and the index of the newest.
    assert sorted(pages) == [f"dashboard/dt={older}.html", f"dashboard/dt={day}.html", "dashboard/index.html"]
    assert f'data-page="index" data-day="{day}"' in pages["dashboard/index.html"]
    assert f'rel="prev" href="dt={older}.html"' in pages[f"dashboard/dt={day}.html"]
    assert f'rel="next" href="dt={day}.html"' in pages[f"dashboard/dt={older}.html"]


def test_the_plotly_asset_is_written_once_per_bucket(tmp_path: Path, local_bucket) -> None:
    written: list[str] = []
    write = local_bucket.write
    local_bucket.write = lambda key, data: (written.append(key), write(key, data))[1]
    for n in range(2):
        write_dashboard({f"dashboard/dt=2026-11-2{n}.html": "<p>page</p>"}, local_bucket, tmp_path / "copy")
    assert written == [asset_key(), "dashboard/dt=2026-11-20.html", "dashboard/dt=2026-11-21.html"]
    assert (tmp_path / "copy" / plotly_asset_name()).stat().st_size == local_bucket.list(asset_key())[asset_key()]


def test_a_page_opened_by_a_presigned_link_loads_the_asset_the_link_names(
    tmp_path: Path, day: date, local_bucket, sample_frames
) -> None:
    """As on S3 through a presigned link: the page's relative asset is refused (403), so the link names a
    signed URL of that same object in `#plotly=`, which the page loads. A URL of anything else is ignored."""
    page = _publish(tmp_path, day, local_bucket, [sample_frames(day, 30)])

    class Signed(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(page.parent), **kwargs)

        def do_GET(self) -> None:  # http.server's naming
            if self.path == "/favicon.ico":  # the browser asks; no console error for that
                self.send_response(204)
                self.end_headers()
                return
            if self.path.endswith(".js") and "X-Amz-Signature=" not in self.path:
                self.send_error(403, "AccessDenied")
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    (page.parent / "evil.js").write_text("window.EVIL = true;")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Signed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with tempfile.TemporaryDirectory(prefix="x-pipeline-chromium-") as workdir:
            browser = Chromium(Path(workdir), loopback=True)
            try:
                signed = f"{base}/{plotly_asset_name()}?X-Amz-Signature=abc"
                opened = browser.open(f"{base}/{page.name}#plotly={quote(signed, safe='')}")
                page_requests = [u for u in opened.requests if not u.endswith("/favicon.ico")]  # the browser's
                assert page_requests == [f"{base}/{page.name}", f"{base}/{plotly_asset_name()}", signed]
                assert all("403" in e for e in opened.console_errors), opened.console_errors  # the unsigned try
                assert opened.sections["hashtags"]["drawn"] == 1
                assert not browser.evaluate("document.body.classList.contains('no-plotly')")

                evil = f"{base}/evil.js?X-Amz-Signature=abc"
                refused = browser.open(f"{base}/{page.name}?again#plotly={quote(evil, safe='')}")  # a new load
                assert evil not in refused.requests and browser.evaluate("window.EVIL === undefined")
                assert refused.sections["hashtags"]["drawn"] == 0
                assert browser.evaluate("document.body.classList.contains('no-plotly')")
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()


def test_pages_are_written_again_only_when_what_they_show_changed(
    tmp_path: Path, day: date, local_bucket, sample_frames
) -> None:
    older, local = day - timedelta(days=1), tmp_path / "dashboard"
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    try:
        warehouse.ensure_tables()
        _load(warehouse, sample_frames(older, 30, query="older"))
        analyze_day(warehouse, older)
        first = publish_pages(warehouse, local_bucket, older, local)
        assert first.written == ["dashboard/index.html", f"dashboard/dt={older}.html"]  # the day's page last
        assert (first.latest, first.local) == (True, (local / "index.html").resolve())

        # Nothing changed: nothing written. A local copy gone: written again.
        again = publish_pages(warehouse, local_bucket, older, local)
        assert again.written == [] and again.local == first.local
        (local / f"dt={older}.html").unlink()
        assert publish_pages(warehouse, local_bucket, older, local).written == first.written

        # The next day's publish rewrites the older day's page (its link to the new day): still current.
        _load(warehouse, sample_frames(day, 30, query="newer"))
        analyze_day(warehouse, day)
        assert f"dashboard/dt={older}.html" in publish_pages(warehouse, local_bucket, day, local).written
        assert f'rel="next" href="dt={day}.html"' in (local / f"dt={older}.html").read_text()
        assert publish_pages(warehouse, local_bucket, older, local).written == []

        # The older day analyzed again: its pages and the newer day's, which shows it in its trends, are rebuilt.
        analyze_day(warehouse, older, force=True)
        rebuilt = publish_pages(warehouse, local_bucket, older, local)
        assert sorted(rebuilt.written) == sorted(["dashboard/index.html", f"dashboard/dt={day}.html",
                                                  f"dashboard/dt={older}.html"]) and not rebuilt.latest
    finally:
        warehouse.close()
