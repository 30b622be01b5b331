"""The daily dashboard: one self-contained HTML file per day, read from the `dashboard_*` views.

plotly.js is inlined, so the file opens from a bucket, a mail attachment or a laptop with no network.
Every value that came from the data is HTML-escaped (tweet text, names, queries; also chart labels,
which plotly renders as pseudo-HTML). A day with no tweets renders "no tweets for this day" in every
section rather than empty axes. The `analyze_and_publish` task is the pipeline stage: metrics, then
the dashboard to the bucket (`dashboard/dt=YYYY-MM-DD.html`, and `dashboard/index.html` for the latest
day), to a local folder on embedded defaults, and a Prefect link artifact.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.offline
from plotly.subplots import make_subplots
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NO_CACHE

from tasks.analytics.analyze import DEFAULT_TOP_N, analyze_day, day_literal
from tasks.lake.bucket import Bucket, write_file_atomically
from tasks.schema import qualified
from tasks.warehouse import WarehouseTarget
from tasks.warehouse.base import Warehouse

HISTORY_DAYS = 30
TOP_TWEETS = 10
CHART_TOP = 15
ARTIFACT_KEY = "x-pipeline-dashboard"
# A presigned S3 URL lasts at most 7 days (SigV4); the next daily run links a fresh one.
LINK_EXPIRY = timedelta(days=7)
PLOTLY_CONFIG = {"displaylogo": False, "displayModeBar": False, "responsive": True}
SECTIONS = {
    "headline": "Headline",
    "volume": "Volume over time",
    "hashtags": "Top hashtags",
    "mentions-domains": "Top mentions and linked domains",
    "authors": "Top authors",
    "sentiment": "Sentiment over time",
    "languages": "Language mix",
    "top-tweets": "Most engaging tweets",
}
SENTIMENT_COLORS = {"positive": "#2e9d5b", "neutral": "#9aa5b1", "negative": "#d64545"}

# Headline numbers: (column, label, kind); kind decides how the change vs the previous day reads.
HEADLINE = (
    ("tweets", "Tweets", "count"),
    ("authors", "Authors", "count"),
    ("engagement", "Engagement", "count"),
    ("reply_share", "Replies", "share"),
    ("quote_share", "Quotes", "share"),
    ("retweet_share", "Retweets", "share"),
    ("positive_share", "Positive (English)", "share"),
    ("mean_compound", "Mean sentiment", "score"),
)


@dataclass
class DashboardData:
    """What the page shows, as read from the views; rows are dicts keyed by view column."""

    day: date
    daily: list[dict[str, Any]] = field(default_factory=list)  # history window, oldest first
    volume_daily: list[dict[str, Any]] = field(default_factory=list)
    hourly: list[dict[str, Any]] = field(default_factory=list)
    hashtags: list[dict[str, Any]] = field(default_factory=list)
    mentions: list[dict[str, Any]] = field(default_factory=list)
    domains: list[dict[str, Any]] = field(default_factory=list)
    authors: list[dict[str, Any]] = field(default_factory=list)
    languages: list[dict[str, Any]] = field(default_factory=list)
    top_tweets: list[dict[str, Any]] = field(default_factory=list)

    def on(self, day: date) -> dict[str, Any] | None:
        return next((r for r in self.daily if r["dt"] == day), None)

    @property
    def today(self) -> dict[str, Any] | None:
        return self.on(self.day)

    @property
    def previous(self) -> dict[str, Any] | None:
        return self.on(self.day - timedelta(days=1))

    @property
    def empty(self) -> bool:
        return not self.today or not self.today["tweets"]


def _select(warehouse: Warehouse, view: str, columns: list[str], where: str, order: str) -> list[dict]:
    cols = ", ".join(f'"{c}"' for c in columns)
    rows = warehouse.query(
        f"SELECT {cols} FROM {qualified(view, warehouse.schema)} WHERE {where} ORDER BY {order}"
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def load_dashboard_data(warehouse: Warehouse, day: date, history_days: int = HISTORY_DAYS) -> DashboardData:
    """Read the day (and the history window before it) from the dashboard views, as a BI tool would."""
    on_day = f'"dt" = {day_literal(day)}'
    window = f'"dt" > {day_literal(day - timedelta(days=history_days))} AND "dt" <= {day_literal(day)}'
    entity = ["value", "occurrences", "tweets", "rank"]
    return DashboardData(
        day=day,
        daily=_select(warehouse, "dashboard_daily", [
            "dt", "tweets", "authors", "engagement", "reply_share", "quote_share", "retweet_share",
            "scored_tweets", "not_scored_tweets", "positive_tweets", "neutral_tweets", "negative_tweets",
            "mean_compound", "positive_share"], window, '"dt"'),
        volume_daily=_select(warehouse, "dashboard_volume_daily", ["dt", "query", "tweets"], window,
                                   '"dt", "query"'),
        hourly=_select(warehouse, "dashboard_volume_hourly", ["query", "created_date", "hour", "tweets"],
                       on_day, '"query", "created_date", "hour"'),
        hashtags=_select(warehouse, "dashboard_top_hashtags", ["hashtag", *entity[1:]], on_day, '"rank"'),
        mentions=_select(warehouse, "dashboard_top_mentions", ["username", *entity[1:]], on_day, '"rank"'),
        domains=_select(warehouse, "dashboard_top_domains", ["domain", *entity[1:]], on_day, '"rank"'),
        authors=_select(warehouse, "dashboard_top_authors", [
            "author_id", "username", "name", "followers_count", "tweets", "engagement", "engagement_rank",
            "reach_rank", "profile_url"], on_day, '"engagement_rank"'),
        languages=_select(warehouse, "dashboard_languages", ["lang", "tweets", "share"], on_day,
                           '"tweets" DESC, "lang"'),
        top_tweets=_select(warehouse, "dashboard_tweets", [
            "tweet_id", "created_at", "username", "lang", "text", "like_count", "retweet_count", "reply_count",
            "quote_count", "engagement", "sentiment", "url"],
            f'{on_day} AND "engagement_rank" <= {TOP_TWEETS}', '"engagement_rank"'),
    )


# --- rendering --------------------------------------------------------------------------------------

def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _number(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "share":
        return f"{float(value) * 100:.1f}%"
    if kind == "score":
        return f"{float(value):+.3f}"
    return f"{int(value):,}"


def _change(today: Any, previous: Any, kind: str) -> str:
    if today is None or previous is None:
        return "no comparison"
    delta = float(today) - float(previous)
    if kind == "share":
        return f"{delta * 100:+.1f} pts"
    if kind == "score":
        return f"{delta:+.3f}"
    pct = f" ({delta / float(previous) * 100:+.1f}%)" if previous else ""
    return f"{int(delta):+,}{pct}"


def _chart(fig: go.Figure, name: str, height: int = 360) -> str:
    fig.update_layout(template="plotly_white", height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.15})
    return fig.to_html(full_html=False, include_plotlyjs=False, config=PLOTLY_CONFIG, div_id=f"chart-{name}")


def _empty(what: str = "No tweets for this day.") -> str:
    return f'<p class="empty">{esc(what)}</p>'


def _bars(rows: list[dict], label: str, value: str, title: str, name: str, prefix: str = "") -> str:
    rows = rows[:CHART_TOP][::-1]  # plotly draws horizontal bars bottom-up
    fig = go.Figure(go.Bar(
        x=[r[value] for r in rows], y=[esc(prefix + str(r[label])) for r in rows], orientation="h",
        marker_color="#3b6fb6"))
    fig.update_layout(title=title)
    return _chart(fig, name, height=max(260, 28 * len(rows) + 90))


def render_headline(data: DashboardData) -> str:
    today, previous = data.today or {}, data.previous
    prev_day = (data.day - timedelta(days=1)).isoformat()
    cards = []
    for col, label, kind in HEADLINE:
        value = today.get(col)
        change = (f"{_change(value, previous.get(col), kind)} vs previous day" if previous
                  else f"no data for the previous day ({prev_day})")
        cards.append(
            f'<div class="card" data-metric="{col}"><div class="label">{esc(label)}</div>'
            f'<div class="value">{esc(_number(value, kind))}</div>'
            f'<div class="change">{esc(change)}</div></div>'
        )
    banner = _empty(f"No tweets for this day ({data.day.isoformat()}).") if data.empty else ""
    return banner + f'<div class="cards">{"".join(cards)}</div>'


def render_volume(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    fig = go.Figure()
    for query in sorted({r["query"] for r in data.hourly}):
        rows = [r for r in data.hourly if r["query"] == query]
        hours = [datetime.combine(r["created_date"], time(int(r["hour"])), tzinfo=UTC) for r in rows]
        fig.add_bar(x=hours, y=[r["tweets"] for r in rows], name=esc(query))
    fig.update_layout(title="Tweets per hour of creation (UTC), per query", barmode="group")
    parts = [_chart(fig, "volume-hourly")]
    days = sorted({r["dt"] for r in data.volume_daily})
    if len(days) > 1:
        daily = go.Figure()
        for query in sorted({r["query"] for r in data.volume_daily}):
            rows = [r for r in data.volume_daily if r["query"] == query]
            daily.add_bar(x=[r["dt"].isoformat() for r in rows], y=[r["tweets"] for r in rows], name=esc(query))
        daily.update_layout(title=f"Tweets per day, per query (last {HISTORY_DAYS} days)", barmode="group")
        daily.update_xaxes(type="category")
        parts.append(_chart(daily, "volume-daily"))
    return "".join(parts)


def render_hashtags(data: DashboardData) -> str:
    if not data.hashtags:
        return _empty() if data.empty else _empty("No hashtags in this day's tweets.")
    return _bars(data.hashtags, "hashtag", "occurrences", "Hashtags by use", "hashtags", "#")


def render_mentions_domains(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    mentions = (_bars(data.mentions, "username", "occurrences", "Mentioned accounts", "mentions", "@")
                if data.mentions else _empty("No mentions in this day's tweets."))
    domains = (_bars(data.domains, "domain", "occurrences", "Linked domains", "domains")
               if data.domains else _empty("No links in this day's tweets."))
    return f'<div class="pair"><div>{mentions}</div><div>{domains}</div></div>'


def _author(r: dict) -> str:
    if not r["username"]:
        return f"user {esc(r['author_id'])} (not expanded by the API)"
    return f'<a href="{esc(r["profile_url"])}" target="_blank" rel="noopener">@{esc(r["username"])}</a>'


def render_authors(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    top = [r for r in data.authors if r["engagement_rank"] <= TOP_TWEETS]
    fig = go.Figure(go.Bar(
        x=[r["engagement"] or 0 for r in top][::-1],
        y=[esc("@" + r["username"] if r["username"] else f"user {r['author_id']}") for r in top][::-1],
        orientation="h", marker_color="#7a5cc4"))
    fig.update_layout(title="By engagement (likes + retweets + replies + quotes)")
    reach = sorted((r for r in data.authors if r["reach_rank"] <= TOP_TWEETS), key=lambda r: r["reach_rank"])
    rows = "".join(
        f"<tr><td>{r['reach_rank']}</td><td>{_author(r)}</td><td>{esc(r['name'])}</td>"
        f"<td class=num>{esc(_number(r['followers_count'], 'count'))}</td><td class=num>{r['tweets']}</td>"
        f"<td class=num>{esc(_number(r['engagement'], 'count'))}</td></tr>"
        for r in reach
    )
    table = ('<table class="reach"><caption>By follower reach</caption><thead><tr><th>#</th><th>author</th>'
             '<th>name</th><th>followers</th><th>tweets</th><th>engagement</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    return f'<div class="pair"><div>{_chart(fig, "authors", 420)}</div><div>{table}</div></div>'


def render_sentiment(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    days = [r for r in data.daily if r["tweets"]]
    x = [r["dt"].isoformat() for r in days]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for label, color in SENTIMENT_COLORS.items():
        fig.add_bar(x=x, y=[r[f"{label}_tweets"] for r in days], name=label, marker_color=color, secondary_y=False)
    fig.add_scatter(x=x, y=[r["mean_compound"] for r in days], name="mean compound",
                    mode="lines+markers", line={"color": "#222"}, secondary_y=True)
    fig.update_xaxes(type="category")
    fig.update_layout(title="English tweets by VADER sentiment, per day", barmode="stack")
    fig.update_yaxes(title_text="tweets", secondary_y=False)
    fig.update_yaxes(title_text="mean compound (-1..1)", range=[-1, 1], secondary_y=True)
    today = data.today or {}
    note = (f'<p class="note">{today.get("scored_tweets", 0):,} English tweets scored; '
            f'{today.get("not_scored_tweets", 0):,} in other languages are not scored.</p>')
    return _chart(fig, "sentiment") + note


def render_languages(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    fig = go.Figure(go.Pie(labels=[esc(r["lang"]) for r in data.languages], values=[r["tweets"] for r in data.languages],
                           hole=0.45, sort=False))
    fig.update_layout(title="Tweets by language (X's language code)")
    return _chart(fig, "languages")


def render_top_tweets(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    rows = []
    for i, r in enumerate(data.top_tweets, 1):
        created = r["created_at"].astimezone(UTC).strftime("%H:%M") if r["created_at"] else "–"
        author = f"@{esc(r['username'])}" if r["username"] else "unknown author"
        rows.append(
            f"<tr><td>{i}</td><td>{created}</td><td>{author}</td>"
            f'<td class="text" dir="auto">{esc(r["text"])}</td><td>{esc(r["lang"] or "–")}</td>'
            f"<td>{esc(r['sentiment'])}</td><td class=num>{esc(_number(r['engagement'], 'count'))}</td>"
            f'<td><a href="{esc(r["url"])}" target="_blank" rel="noopener">open</a></td></tr>'
        )
    return ('<table class="tweets"><thead><tr><th>#</th><th>UTC</th><th>author</th><th>text</th><th>lang</th>'
            "<th>sentiment</th><th>engagement</th><th>link</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


RENDERERS = {
    "headline": render_headline,
    "volume": render_volume,
    "hashtags": render_hashtags,
    "mentions-domains": render_mentions_domains,
    "authors": render_authors,
    "sentiment": render_sentiment,
    "languages": render_languages,
    "top-tweets": render_top_tweets,
}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f9;color:#1d2733}
header{background:#15202b;color:#fff;padding:16px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c5ced8;font-size:13px}main{padding:16px 24px;max-width:1400px;margin:auto}
section{background:#fff;border-radius:8px;padding:12px 16px;margin-bottom:16px;box-shadow:0 1px 2px #0001}
section h2{font-size:17px;margin:4px 0 8px}.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.card{border:1px solid #e3e8ee;border-radius:6px;padding:10px}.card .label{font-size:12px;color:#5b6b7c}
.card .value{font-size:26px;font-weight:600}.card .change{font-size:12px;color:#5b6b7c}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:16px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e3e8ee;padding:5px 6px;text-align:left;vertical-align:top}
td.num{text-align:right}td.text{white-space:pre-wrap;max-width:620px}caption{text-align:left;font-weight:600;padding:6px 0}
.empty{background:#fff7e0;border:1px solid #f0d58c;border-radius:6px;padding:12px;font-weight:600}
.note{font-size:12px;color:#5b6b7c}
"""


def render_dashboard(data: DashboardData, generated_at: datetime | None = None) -> str:
    """The whole page: plotly.js inlined once in <head>, one <section> per part of the dashboard."""
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    sections = "".join(
        f'<section id="{sid}"><h2>{esc(title)}</h2>{RENDERERS[sid](data)}</section>' for sid, title in SECTIONS.items()
    )
    queries = sorted({r["query"] for r in data.volume_daily if r["dt"] == data.day})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>X pipeline dashboard {data.day.isoformat()}</title>
<style>{STYLE}</style>
<script>{plotly.offline.get_plotlyjs()}</script>
</head><body>
<header><h1>X pipeline: daily dashboard for {data.day.isoformat()}</h1>
<p>Queries: {esc(", ".join(queries) or "none")} · generated {generated} · all times UTC</p></header>
<main data-day="{data.day.isoformat()}" data-empty="{str(data.empty).lower()}">{sections}</main>
</body></html>
"""


# --- publishing ----------------------------------------------------------------------------------

def dashboard_keys(day: date) -> tuple[str, str]:
    return f"dashboard/dt={day.isoformat()}.html", "dashboard/index.html"


def is_latest_day(warehouse: Warehouse, day: date) -> bool:
    """A backfill of an older day must not replace the index page of a newer one."""
    latest = warehouse.query(f'SELECT MAX("dt") FROM {qualified("metrics_daily", warehouse.schema)}')[0][0]
    return latest is None or day >= latest


def write_dashboard(page: str, day: date, bucket: Bucket, local_dir: Path | None, latest: bool) -> str:
    """Write the day's page (and the index when `latest`) to the bucket and `local_dir`; returns the
    location to open: the local index or day page, else the bucket's day page."""
    day_key, index_key = dashboard_keys(day)
    data = page.encode("utf-8")
    keys = [day_key, index_key] if latest else [day_key]
    for key in keys:
        bucket.write(key, data)
    if local_dir is None:
        return bucket.url(day_key)
    local_dir.mkdir(parents=True, exist_ok=True)
    paths = [local_dir / Path(k).name for k in keys]
    for path in paths:
        write_file_atomically(path, data)
    return str(paths[-1].resolve())


@task(name="analyze-and-publish", retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE, persist_result=False)
def analyze_and_publish(
    target: WarehouseTarget,
    bucket: Bucket,
    day: date,
    local_dir: Path | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> str:
    """Recompute the day's metrics and views, rebuild the dashboard, link it in the Prefect UI.

    Returns where to open the dashboard (a local file on embedded defaults, else the bucket URL).
    """
    logger = get_run_logger()
    with target.connect() as warehouse:
        metrics = analyze_day(warehouse, day, top_n)
        logger.info("metrics for %s: %d tweets, %d scored for sentiment; rows %s",
                    day, metrics.tweets, metrics.scored_tweets, metrics.rows)
        data = load_dashboard_data(warehouse, day)
        latest = is_latest_day(warehouse, day)
    location = write_dashboard(render_dashboard(data), day, bucket, local_dir, latest)
    logger.info("dashboard for %s: %s%s", day, location, "" if latest else " (older day: index.html kept)")
    link = Path(location).as_uri() if local_dir is not None else bucket.share_url(dashboard_keys(day)[0], LINK_EXPIRY)
    publish_link(link, day, latest)
    return location


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
            description=f"Self-contained HTML dashboard for {day.isoformat()} (opens with no network){expiry}",
        )


def _now() -> datetime:
    return datetime.now(UTC)
