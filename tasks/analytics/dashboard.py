"""The dashboard stage: the day's metrics, then the dashboard pages to the bucket, then a Prefect link.

Keys (relative to the bucket): `dashboard/dt=YYYY-MM-DD.html` per analyzed day, `dashboard/index.html`
across days, and `dashboard/assets/plotly-<version>.min.js`, the plotly.js every page references by a
relative path (written once per bucket: skipped when an object of that size is there). On embedded defaults
the same files go to a local folder too, so the pages open from either with no network.

Publishing a day rewrites its page, the pages of the analyzed days just before and after it (their links
to it), and the index, which is always built from the newest analyzed day: a backfill of an older day
never moves it back in time. Pages are rewritten only when what they are built from changed: the day's page
carries a hash of every day's analysis record and of the page code (`pages_inputs`), and a re-run that
finds the same hash there (and in the local copy) writes nothing but the Prefect link. Pages are rendered by `tasks.analytics.pages` from what
`tasks.analytics.reads` reads in the `dashboard_*` views.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import plotly
import plotly.offline
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NO_CACHE

from tasks.analytics import pages as pages_module
from tasks.analytics import reads as reads_module
from tasks.analytics.analyze import DEFAULT_TOP_N, DayMetrics, analyze_day
from tasks.analytics.pages import (
    INDEX_PAGE,
    SECTIONS,
    day_page_name,
    page_inputs,
    plotly_asset_name,
    render_dashboard,
    render_index,
)
from tasks.analytics.reads import HISTORY_DAYS, DashboardData, analyzed_days, load_dashboard_data
from tasks.lake.bucket import Bucket, write_file_atomically
from tasks.schema import qualified
from tasks.warehouse import WarehouseTarget
from tasks.warehouse.base import Warehouse

__all__ = [
    "ARTIFACT_KEY", "HISTORY_DAYS", "SECTIONS", "DashboardData", "analyze_and_publish", "build_pages",
    "dashboard_keys", "is_latest_day", "load_dashboard_data", "publish_link", "publish_pages", "render_dashboard",
    "render_index", "write_dashboard",
]

PREFIX = "dashboard"
ARTIFACT_KEY = "x-pipeline-dashboard"
# A presigned S3 URL lasts at most 7 days (SigV4); the next daily run links a fresh one.
LINK_EXPIRY = timedelta(days=7)


def dashboard_keys(day: date) -> tuple[str, str]:
    """The day's page and the index."""
    return f"{PREFIX}/{day_page_name(day)}", f"{PREFIX}/{INDEX_PAGE}"


def asset_key() -> str:
    return f"{PREFIX}/{plotly_asset_name()}"


def is_latest_day(warehouse: Warehouse, day: date) -> bool:
    """Whether `day` is the newest analyzed day (the shared Prefect link follows only that one)."""
    latest = warehouse.query(f'SELECT MAX("dt") FROM {qualified("metrics_daily", warehouse.schema)}')[0][0]
    return latest is None or day >= latest


def build_pages(warehouse: Warehouse, day: date, history_days: int = HISTORY_DAYS,
                inputs: str | None = None) -> dict[str, str]:
    """Key -> HTML of every page publishing `day` changes: the day's, its neighbours', the index. Day pages
    carry `inputs` (`pages_inputs`)."""
    days = analyzed_days(warehouse)
    data = load_dashboard_data(warehouse, day, history_days, days)
    day_key, index_key = dashboard_keys(day)
    pages = {day_key: render_dashboard(data, inputs=inputs)}
    for neighbour in data.neighbours():
        if neighbour is not None:
            pages[dashboard_keys(neighbour)[0]] = render_dashboard(
                load_dashboard_data(warehouse, neighbour, history_days, days), inputs=inputs)
    newest = max([*days, day])
    index = data if newest == day else load_dashboard_data(warehouse, newest, history_days, days)
    pages[index_key] = render_index(index)
    # The day's page last: `pages_current` takes it as the sign that the rest of this set was written.
    return {**{k: v for k, v in pages.items() if k != day_key}, day_key: pages[day_key]}


_PAGE_CODE = tuple(Path(m.__file__).read_bytes() for m in (pages_module, reads_module)) + (
    Path(__file__).read_bytes(), plotly.__version__.encode())


def pages_inputs(warehouse: Warehouse, history_days: int = HISTORY_DAYS) -> str:
    """SHA-256 of what the pages are built from: the analysis of every analyzed day (`analyzed_days`: what its
    metrics were computed from, and when) and the code that reads and renders them."""
    digest = hashlib.sha256(b"".join(_PAGE_CODE) + str(history_days).encode())
    for row in warehouse.query(f'SELECT "dt", "inputs", "analyzed_at" FROM {qualified("analyzed_days", warehouse.schema)} '
                               'ORDER BY "dt"'):
        digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def pages_current(bucket: Bucket, day: date, inputs: str, local_dir: Path | None) -> bool:
    """Whether the day's pages and the index are in the bucket (and `local_dir`) as publishing would write them:
    the day's page, written last, was built from `inputs`, so its neighbours and the index were written then
    (or later, by a newer publish)."""
    day_key, index_key = dashboard_keys(day)
    if not (bucket.list(day_key).get(day_key) and bucket.list(index_key).get(index_key)):
        return False
    if page_inputs(bucket.read(day_key)) != inputs:
        return False
    if local_dir is None:
        return True
    page, index = (local_dir / key.removeprefix(f"{PREFIX}/") for key in (day_key, index_key))
    return page.is_file() and index.is_file() and page_inputs(page.read_bytes()) == inputs


@dataclass(frozen=True)
class Publication:
    written: list[str]  # keys of the pages written (none when they were current)
    latest: bool  # the day is the newest analyzed day
    shown: str  # the key to open: the index for the newest day, else the day's page
    local: Path | None  # its local copy


def publish_pages(warehouse: Warehouse, bucket: Bucket, day: date, local_dir: Path | None) -> Publication:
    """Build and write every page publishing `day` changes, unless they are current (`pages_current`)."""
    inputs = pages_inputs(warehouse)
    written = [] if pages_current(bucket, day, inputs, local_dir) else list(
        write_dashboard(build_pages(warehouse, day, inputs=inputs), bucket, local_dir))
    day_key, index_key = dashboard_keys(day)
    latest = is_latest_day(warehouse, day)
    shown = index_key if latest else day_key
    return Publication(written, latest, shown,
                       None if local_dir is None else (local_dir / shown.removeprefix(f"{PREFIX}/")).resolve())


def write_asset(bucket: Bucket, local_dir: Path | None) -> None:
    """plotly.js, once per bucket and per local folder: rewritten only when absent or of another size."""
    script = plotly.offline.get_plotlyjs().encode("utf-8")
    key = asset_key()
    if bucket.list(key).get(key) != len(script):
        bucket.write(key, script)
    if local_dir is not None:
        path = local_dir / plotly_asset_name()
        if not path.exists() or path.stat().st_size != len(script):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomically(path, script)


def write_dashboard(pages: dict[str, str], bucket: Bucket, local_dir: Path | None) -> dict[str, Path | None]:
    """Write the asset, then the pages (keys under `dashboard/`) to the bucket and to `local_dir`;
    returns each key's local copy (None without `local_dir`)."""
    write_asset(bucket, local_dir)
    copies: dict[str, Path | None] = {}
    for key, page in pages.items():
        data = page.encode("utf-8")
        bucket.write(key, data)
        copies[key] = None
        if local_dir is not None:
            path = local_dir / key.removeprefix(f"{PREFIX}/")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomically(path, data)
            copies[key] = path.resolve()
    return copies


@task(name="analyze-and-publish", retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE, persist_result=False)
def analyze_and_publish(
    target: WarehouseTarget,
    bucket: Bucket,
    day: date,
    local_dir: Path | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> tuple[str, DayMetrics]:
    """Recompute the day's metrics (unless no load changed their inputs) and views, rebuild the dashboard,
    link it in the Prefect UI.

    Returns where to open the dashboard (a local file on embedded defaults, else the bucket URL) and the
    day's metrics.
    """
    logger = get_run_logger()
    with target.connect() as warehouse:
        metrics = analyze_day(warehouse, day, top_n)
        logger.info("metrics for %s: %d tweets, %d scored for sentiment; rows %s",
                    day, metrics.tweets, metrics.scored_tweets, metrics.rows)
        published = publish_pages(warehouse, bucket, day, local_dir)
    local, day_key = published.local, dashboard_keys(day)[0]
    location = str(local) if local is not None else bucket.url(published.shown)
    logger.info("dashboard for %s: %s (%s)", day, location,
                "pages written: " + ", ".join(k.removeprefix(f"{PREFIX}/") for k in published.written)
                if published.written else "pages current: built from the same analyses, not written again")
    publish_link(local.as_uri() if local is not None else share_link(bucket, day_key), day, published.latest)
    return location, metrics


def share_link(bucket: Bucket, key: str) -> str:
    """A URL a browser opens for the page `key` (presigned on S3), and in its fragment one for the shared
    plotly.js: a presigned page cannot load its relative neighbours, so the page loads the asset from there
    (only that object: the page checks the URL names the same host and key)."""
    page = bucket.share_url(key, LINK_EXPIRY)
    asset = bucket.share_url(asset_key(), LINK_EXPIRY)
    return page if page.startswith("file:") else f"{page}#plotly={quote(asset, safe='')}"


def publish_link(link: str, day: date, latest: bool) -> None:
    """Link the dashboard in the Prefect UI with a URL a browser opens (a presigned https URL on S3).

    The day's own artifact always; the shared `x-pipeline-dashboard` key only for the latest day by date,
    so a backfill of older days never points it back in time."""
    expiry = "" if link.startswith("file:") else f"; this link expires at {_now() + LINK_EXPIRY:%Y-%m-%d %H:%M} UTC"
    for key in [f"{ARTIFACT_KEY}-{day.isoformat()}", *([ARTIFACT_KEY] if latest else [])]:
        create_link_artifact(
            key=key,
            link=link,
            link_text=f"X pipeline dashboard for {day.isoformat()}",
            description=f"HTML dashboard for {day.isoformat()}, with links to the other days and the index{expiry}",
        )


def _now() -> datetime:
    return datetime.now(UTC)
