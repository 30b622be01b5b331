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
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from flows.daily import daily
from flows.settings import PipelineSettings
from tasks.analytics.analyze import analyze_day
from tasks.analytics.dashboard import (
    ARTIFACT_KEY,
    SECTIONS,
    DashboardData,
    load_dashboard_data,
    render_dashboard,
    write_dashboard,
)
from tasks.warehouse.base import DuckDBWarehouse

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-proxy-server", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # any attempt to reach a host fails, and is recorded below
]
PAGE_STATE_JS = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('main > section')].map(s => [s.id, {
  plots: s.querySelectorAll('.js-plotly-plot').length,
  drawn: [...s.querySelectorAll('.js-plotly-plot')].filter(p => p.querySelector('.main-svg .trace, .main-svg .slice')).length,
  empty: s.querySelectorAll('.empty').length,
  cards: [...s.querySelectorAll('.card')].map(c => c.innerText),
  rows: s.querySelectorAll('tbody tr').length,
  links: [...s.querySelectorAll('tbody a[href]')].map(a => a.getAttribute('href')),
}])))"""


@dataclass
class Rendered:
    sections: dict[str, dict[str, Any]]
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol (websocket on loopback)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail("chromium is not installed: run .ci/run, or `apt-get install -y chromium`")
        profile = workdir / "chromium-profile"
        profile.mkdir()
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
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
        return result["result"]["value"]

    def render(self, path: Path, screenshot: Path, width: int = 1400) -> Rendered:
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=1000, deviceScaleFactor=1, mobile=False)
        self.events.clear()
        self.send("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        # plotly finishes drawing asynchronously: wait until the number of drawn plots stops changing.
        drawn, deadline = -1, time.monotonic() + 30
        while time.monotonic() < deadline:
            now = self.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg .trace, "
                                ".js-plotly-plot .main-svg .slice').length")
            if now == drawn:
                break
            drawn = now
            time.sleep(0.5)
        sections = json.loads(self.evaluate(PAGE_STATE_JS))
        height = math.ceil(self.send("Page.getLayoutMetrics")["cssContentSize"]["height"])
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        rendered = Rendered(sections)
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
    assert rendered.console_errors == []
    assert rendered.requests == [page.resolve().as_uri()]  # the page itself, nothing else


def test_dashboard_after_two_daily_runs_shows_every_section(prefect_server: None, tmp_path: Path, day: date) -> None:
    queries = ["#DataEng", "prefect polars"]
    daily(day=day - timedelta(days=1), settings=PipelineSettings(queries=queries, sample_tweets=120, local_root=str(tmp_path)))
    summary = daily(day=day, settings=PipelineSettings(queries=queries, sample_tweets=120, local_root=str(tmp_path)))

    index = Path(summary.extra["dashboard"])
    assert index == (tmp_path / "dashboard" / "index.html").resolve()
    lake = tmp_path / "lake" / "dashboard"
    assert sorted(p.name for p in lake.iterdir()) == [f"dt={day - timedelta(days=1)}.html", f"dt={day}.html",
                                                      "index.html"]
    assert (lake / "index.html").read_bytes() == index.read_bytes() == (lake / f"dt={day}.html").read_bytes()

    rendered = render_in_chromium(index, ARTIFACTS / "dashboard.png")
    _assert_offline_and_clean(rendered, index)
    s = rendered.sections
    assert list(s) == list(SECTIONS)
    assert all(sec["empty"] == 0 for sec in s.values()), {k: v["empty"] for k, v in s.items()}
    assert len(s["headline"]["cards"]) == 8
    tweets_card = s["headline"]["cards"][0]
    assert "240" in tweets_card and "+0 (+0.0%) vs previous day" in tweets_card  # 2 queries x 120, both days
    # Every chart is drawn: hourly + daily volume, hashtags, mentions + domains, authors, sentiment, languages.
    expected_plots = {"volume": 2, "hashtags": 1, "mentions-domains": 2, "authors": 1, "sentiment": 1, "languages": 1}
    assert {k: (s[k]["plots"], s[k]["drawn"]) for k in expected_plots} == {k: (n, n) for k, n in expected_plots.items()}
    assert s["authors"]["rows"] == 10
    assert s["top-tweets"]["rows"] == 10
    assert all(re.fullmatch(r"https://x\.com/i/web/status/\d+", link) for link in s["top-tweets"]["links"])

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
    assert any(index.as_uri() in str(a.data) for a in artifacts)  # a link artifact is stored as markdown


def test_a_day_without_tweets_says_so_in_every_section(tmp_path: Path, day: date, local_bucket) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    try:
        warehouse.ensure_tables()
        analyze_day(warehouse, day)
        data = load_dashboard_data(warehouse, day)
    finally:
        warehouse.close()
    assert data.empty
    page = Path(write_dashboard(render_dashboard(data), day, local_bucket, tmp_path / "dashboard", latest=True))

    rendered = render_in_chromium(page, ARTIFACTS / "dashboard-empty.png")
    _assert_offline_and_clean(rendered, page)
    assert list(rendered.sections) == list(SECTIONS)
    for sid, sec in rendered.sections.items():
        assert sec["empty"] >= 1 and sec["plots"] == 0, sid
    assert "no data for the previous day (2026-11-23)" in rendered.sections["headline"]["cards"][0]


def test_text_from_the_data_is_escaped(day: date) -> None:
    hostile = '<img src=x onerror="alert(1)"></script><b>'
    data = DashboardData(
        day=day,
        daily=[{"dt": day, "tweets": 1, "authors": 1, "engagement": 3, "reply_share": 0.0, "quote_share": 0.0,
                "retweet_share": 0.0, "scored_tweets": 0, "not_scored_tweets": 1, "positive_tweets": 0,
                "neutral_tweets": 0, "negative_tweets": 0, "mean_compound": None, "positive_share": None}],
        volume_daily=[{"dt": day, "query": hostile, "tweets": 1}],
        top_tweets=[{"tweet_id": 7, "created_at": None, "username": hostile, "lang": None, "text": hostile,
                     "like_count": 3, "retweet_count": 0, "reply_count": 0, "quote_count": 0, "engagement": 3,
                     "sentiment": "not scored", "url": "https://x.com/i/web/status/7"}],
    )
    page = render_dashboard(data)
    body = page[page.index("<body>"):]
    assert hostile not in body and "<img" not in body
    assert html.escape(hostile, quote=True) in body


def test_an_older_day_keeps_the_newer_index(tmp_path: Path, day: date, local_bucket) -> None:
    write_dashboard("<p>new</p>", day, local_bucket, tmp_path, latest=True)
    location = write_dashboard("<p>old</p>", day - timedelta(days=3), local_bucket, tmp_path, latest=False)
    assert Path(location).name == f"dt={day - timedelta(days=3)}.html"
    assert local_bucket.read("dashboard/index.html") == b"<p>new</p>" == (tmp_path / "index.html").read_bytes()
    assert local_bucket.read(f"dashboard/dt={day - timedelta(days=3)}.html") == b"<p>old</p>"
