"""The dashboard's HTML: a page per day (`dt=YYYY-MM-DD.html`) and an index across days (`index.html`).

Pages are small: plotly.js is one shared asset (`assets/plotly-<version>.min.js`, next to the pages) that
every page references by a relative path, so a page opens offline from the bucket's `dashboard/` folder or
its local copy. Each chart is a JSON spec in the page, drawn by a short inline script; a chart has one
variant per query (the query filter swaps them, client side) and a variant may be a sentence saying why
there is nothing to draw. Days run on a true date axis: a day without data is a grey band and a gap in the
lines, never a zero. A metric whose inputs no tweet carried (the views give NULL) reads "unknown", with
the reason. Every value from the data is HTML-escaped, chart labels too (plotly renders them as
pseudo-HTML); JSON in a page has `<`, `>` and `&` escaped, so no value can end its script element.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import plotly.io as pio
import plotly.offline

from tasks.analytics.analyze import RISING_DAYS, UNKNOWN_LANG
from tasks.analytics.reads import TOP_TWEETS, DashboardData

CHART_TOP = 15
TREND_TOP = 8  # lines per hashtag or mention trend chart
INDEX_PAGE = "index.html"
ASSET_DIR = "assets"
PLOTLY_CONFIG = {"displaylogo": False, "displayModeBar": False, "responsive": True}
PALETTE = ("#3b6fb6", "#e07b39", "#2e9d5b", "#7a5cc4", "#d64545", "#1f9bb0", "#b5883b", "#5b6b7c")
SENTIMENT_COLORS = {"positive": "#2e9d5b", "neutral": "#9aa5b1", "negative": "#d64545"}
SECTIONS = {
    "headline": "Headline",
    "volume": "Volume over time",
    "hashtags": "Top hashtags",
    "mentions-domains": "Top mentions and linked domains",
    "rising": "Rising topics",
    "authors": "Top authors",
    "sentiment": "Sentiment over time",
    "languages": "Language mix",
    "top-tweets": "Most engaging tweets",
}
INDEX_SECTIONS = {
    "days": "Days",
    "kpi-trends": "Headline numbers per day",
    "volume-trend": "Tweets per day, per query",
    "hashtag-trends": "Hashtag trends",
    "mention-trends": "Mention trends",
    "rising": "Rising topics",
}
ALL_QUERIES_ONLY = {"days", "rising", "authors", "sentiment", "languages", "top-tweets"}
NO_TWEETS = "No tweets for this day."
ONLY_DEFAULT_FIELDS = "only the default fields (id, text): the requests asked for no tweet.fields"


INPUTS_META = "x-pipeline-inputs"
_INPUTS = re.compile(rb'<meta name="' + INPUTS_META.encode() + rb'" content="([0-9a-f]+)">')


def plotly_asset_name() -> str:
    """The shared plotly.js, relative to the pages; the version in the name, so pages of another version
    reference their own file."""
    return f"{ASSET_DIR}/plotly-{plotly.offline.get_plotlyjs_version()}.min.js"


def day_page_name(day: date) -> str:
    return f"dt={day.isoformat()}.html"


# --- values ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kpi:
    column: str
    label: str
    kind: str  # count, share or score: how the value and its change read
    better: int  # +1 when a rise is good news, 0 when a rise is neither good nor bad
    per_query: bool  # also in dashboard_query_daily
    needs: str  # coverage column: 0 of the day's tweets carry the inputs -> unknown
    needs_what: str


HEADLINE = (
    Kpi("tweets", "Tweets", "count", 1, True, "", ""),
    Kpi("authors", "Authors", "count", 1, True, "tweets_with_author", "author_id"),
    Kpi("engagement", "Engagement", "count", 1, True, "tweets_with_counts", "public_metrics"),
    Kpi("reply_share", "Replies", "share", 0, True, "tweets_with_fields", "referenced_tweets"),
    Kpi("quote_share", "Quotes", "share", 0, True, "tweets_with_fields", "referenced_tweets"),
    Kpi("retweet_share", "Retweets", "share", 0, True, "tweets_with_fields", "referenced_tweets"),
    Kpi("positive_share", "Positive (English)", "share", 1, False, "tweets_with_lang", "a language"),
    Kpi("mean_compound", "Mean sentiment", "score", 1, False, "tweets_with_lang", "a language"),
)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def unknown_reason(kpi: Kpi, row: dict[str, Any] | None) -> str | None:
    """Why the KPI is unknown on `row` (there were tweets, none carried its inputs), else None."""
    if not row or not row.get("tweets") or row.get(kpi.column) is not None or not kpi.needs:
        return None
    if row.get(kpi.needs) == 0:
        return f"unknown: no tweet carries {kpi.needs_what}"
    return None


def coverage_note(kpi: Kpi, row: dict[str, Any] | None) -> str:
    """What a known value rests on, when only part of the tweets carried its inputs, or why it is n/a."""
    if not row or not row.get("tweets"):
        return ""
    tweets, covered = row["tweets"], row.get(kpi.needs) if kpi.needs else None
    if kpi.column in ("positive_share", "mean_compound"):
        if row.get("scored_tweets") == 0 and covered:
            return "no English tweet to score"
        return ""
    if covered is None or not 0 < covered < tweets:
        return ""
    if kpi.kind == "share":
        return f"of the {covered:,} tweets whose references are known"
    return f"from the {covered:,} of {tweets:,} tweets that carry {kpi.needs_what}"


def _number(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "share":
        return f"{float(value) * 100:.1f}%"
    if kind == "score":
        return f"{float(value):+.3f}"
    return f"{int(value):,}"


def _change(today: Any, previous: Any, kind: str) -> str:
    delta = float(today) - float(previous)
    if kind == "share":
        return f"{delta * 100:+.1f} pts"
    if kind == "score":
        return f"{delta:+.3f}"
    pct = f" ({delta / float(previous) * 100:+.1f}%)" if previous else ""
    return f"{int(delta):+,}{pct}"


def _tone(delta: float, better: int) -> str:
    """CSS classes of a change: its direction, and whether that is good news (green) or bad (red)."""
    direction = "up" if delta > 0 else "down" if delta < 0 else "flat"
    if not delta or not better:
        return f"{direction} neutral"
    return f"{direction} {'good' if delta * better > 0 else 'bad'}"


def _value(row: dict[str, Any] | None, column: str) -> float | None:
    value = None if row is None else row.get(column)
    return None if value is None else float(value)


def _iso(day: date) -> str:
    return day.isoformat()


def _json(value: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, datetime | date):
            return o.isoformat()
        if isinstance(o, Decimal):
            return float(o)
        raise TypeError(f"not JSON: {o!r}")

    text = json.dumps(value, separators=(",", ":"), default=default, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --- pieces -------------------------------------------------------------------------------------------

def _empty(what: str = NO_TWEETS) -> str:
    return f'<p class="empty">{esc(what)}</p>'


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>' if text else ""


def _all_queries(sid: str) -> str:
    return '<span class="all-queries">all queries</span>' if sid in ALL_QUERIES_ONLY else ""


Variants = dict[str, "list[dict[str, Any]] | str"]


def chart(name: str, variants: Variants, layout: dict[str, Any], height: int = 360) -> str:
    """A chart div and its spec: per query a list of traces, or the sentence to show instead of the chart."""
    spec = {
        "layout": {"height": height, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
                   "legend": {"orientation": "h", "y": -0.15}, **layout},
        "variants": variants,
    }
    return (f'<div class="chart" id="chart-{name}" data-spec="spec-{name}"></div>'
            f'<p class="empty chart-empty" hidden></p>'
            f'<script type="application/json" id="spec-{name}">{_json(spec)}</script>')


def per_query(data: DashboardData, everything: list[dict] | str,
              one: Callable[[str, str], list[dict] | str]) -> Variants:
    """Variants of a chart: "" for all queries, then each query's (colour of the query's index), when the
    window has more than one query."""
    variants: Variants = {"": everything}
    queries = data.queries
    if len(queries) > 1:
        for query in queries:
            variants[query] = one(query, _color(queries, query))
    return variants


def _color(queries: list[str], query: str) -> str:
    return PALETTE[queries.index(query) % len(PALETTE)] if query in queries else PALETTE[0]


def _date_axis(data: DashboardData, **extra: Any) -> dict[str, Any]:
    window = data.window
    half = timedelta(hours=12)
    start, end = (datetime.combine(window[0], time()) - half, datetime.combine(window[-1], time()) + half)
    axis = {"type": "date", "range": [start.strftime("%Y-%m-%d %H:%M"), end.strftime("%Y-%m-%d %H:%M")],
            "tickformat": "%b %d", **extra}
    if len(window) <= 16:
        axis["dtick"] = 86_400_000  # a tick per day
    return axis


def _gap_shapes(data: DashboardData, xref: str = "x", yref: str = "paper") -> list[dict[str, Any]]:
    """A grey band over each day without data (never analyzed): a gap, not a zero."""
    half = timedelta(hours=12)
    return [
        {"type": "rect", "xref": xref, "yref": yref, "x0": str(datetime.combine(d, time()) - half),
         "x1": str(datetime.combine(d, time()) + half), "y0": 0, "y1": 1, "fillcolor": "#9aa5b1",
         "opacity": 0.25, "line": {"width": 0}, "layer": "below"}
        for d in data.missing
    ]


def _gap_labels(data: DashboardData) -> list[dict[str, Any]]:
    if not data.missing or len(data.missing) > 10:
        return []
    return [{"x": _iso(d), "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom", "text": "no data",
             "showarrow": False, "font": {"size": 10, "color": "#5b6b7c"}} for d in data.missing]


def _gap_note(data: DashboardData) -> str:
    if not data.missing:
        return ""
    days = ", ".join(_iso(d) for d in data.missing[:10]) + (" …" if len(data.missing) > 10 else "")
    return f"Grey bands: days without data ({days}); their values are gaps, not zeros."


def sparkline(values: list[float | None], days: list[date], missing: Iterable[date]) -> str:
    """An inline SVG of the window: a line broken where a value is unknown or a day has no data, grey bands
    on days without data."""
    if len(values) < 2:
        return ""
    width, height, missing = 120.0, 28.0, set(missing)
    known = [v for v in values if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    span, step = (high - low) or 1.0, width / (len(values) - 1)

    def xy(i: int, v: float) -> str:
        return f"{i * step:.1f},{height - 3 - (v - low) / span * (height - 6):.1f}"

    parts = [f'<rect class="gap" x="{max(0.0, (i - 0.5) * step):.1f}" y="0" width="{step:.1f}" height="{height:.0f}"/>'
             for i, d in enumerate(days) if d in missing]
    segments, current = [], []
    for i, v in enumerate(values):
        if v is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append((i, v))
    if current:
        segments.append(current)
    for seg in segments:
        if len(seg) == 1:
            x, y = xy(*seg[0]).split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="1.6"/>')
        else:
            parts.append('<path d="M' + " L".join(xy(i, v) for i, v in seg) + '"/>')
    gaps = " ".join(_iso(d) for d in days if d in missing)
    return (f'<svg class="spark" viewBox="0 0 {width:.0f} {height:.0f}" preserveAspectRatio="none" role="img" '
            f'data-segments="{len(segments)}" data-missing="{gaps}">'
            f"<title>{esc(_iso(days[0]))} to {esc(_iso(days[-1]))}; grey: no data</title>{''.join(parts)}</svg>")


# --- the day page ----------------------------------------------------------------------------------

def _card(kpi: Kpi, data: DashboardData, row_on: Callable[[date], dict[str, Any] | None]) -> str:
    row, previous = row_on(data.day), row_on(data.day - timedelta(days=1))
    value = None if row is None else row.get(kpi.column)
    why = unknown_reason(kpi, row)
    shown = "unknown" if why else _number(value, kpi.kind)
    tone = "none"
    before = None if previous is None else previous.get(kpi.column)
    if previous is None:
        change = f"no data for the previous day ({data.day - timedelta(days=1)})"
    elif why or unknown_reason(kpi, previous):
        change = "no comparison: unknown"
    elif value is None or before is None:
        change = "no comparison"
    else:
        change = f"{_change(value, before, kpi.kind)} vs previous day"
        tone = _tone(float(value) - float(before), kpi.better)
    note = why or coverage_note(kpi, row)
    series = [_value(row_on(d), kpi.column) for d in data.window]
    return (
        f'<div class="card" data-metric="{kpi.column}"><div class="label">{esc(kpi.label)}</div>'
        f'<div class="value{" unknown" if why else ""}">{esc(shown)}</div>'
        f'<div class="change {tone}">{esc(change)}</div>'
        + (f'<div class="why">{esc(note)}</div>' if note else "")
        + sparkline(series, data.window, data.missing)
        + "</div>"
    )


def render_headline(data: DashboardData) -> str:
    banner = _empty(f"No tweets for this day ({data.day.isoformat()}).") if data.empty else ""
    cards = "".join(_card(k, data, data.on) for k in HEADLINE)
    if len(data.queries) < 2:
        return banner + f'<div class="cards">{cards}</div>'
    blocks = [f'<div class="cards" data-query="">{cards}</div>']
    for query in data.queries:
        def row_on(day: date, query: str = query) -> dict[str, Any] | None:
            return data.query_on(query, day)

        query_cards = "".join(_card(k, data, row_on) for k in HEADLINE if k.per_query)
        blocks.append(f'<div class="cards" data-query="{esc(query)}" hidden>{query_cards}'
                      '<p class="note">Sentiment is computed over all queries.</p></div>')
    return banner + "".join(blocks)


def _bars(rows: list[dict], label: str, value: str, color: str, prefix: str = "") -> list[dict]:
    rows = rows[:CHART_TOP][::-1]  # plotly draws horizontal bars bottom-up
    return [{"type": "bar", "orientation": "h", "x": [r[value] for r in rows],
             "y": [esc(prefix + str(r[label])) for r in rows], "marker": {"color": color}, "name": ""}]


def _bar_height(variants: Variants) -> int:
    longest = max((len(v[0]["y"]) for v in variants.values() if isinstance(v, list) and v), default=1)
    return max(260, 28 * longest + 90)


def _volume_daily(data: DashboardData, name: str) -> str:
    window = data.window

    def trace(query: str, color: str) -> dict[str, Any] | None:
        by_day = {r["dt"]: r["tweets"] for r in data.volume_daily if r["query"] == query}
        if not by_day:
            return None
        return {"type": "bar", "x": [_iso(d) for d in window], "y": [by_day.get(d) for d in window],
                "name": esc(query), "marker": {"color": color}}

    traces = [t for q in data.queries if (t := trace(q, _color(data.queries, q)))]
    variants = per_query(data, traces or "No tweets in these days.",
                         lambda q, c: [t] if (t := trace(q, c)) else "No tweets for this query in these days.")
    layout = {"title": {"text": f"Tweets per day, per query (last {len(window)} days)"}, "barmode": "group",
              "xaxis": _date_axis(data), "yaxis": {"rangemode": "tozero"},
              "shapes": _gap_shapes(data), "annotations": _gap_labels(data)}
    return chart(name, variants, layout) + _note(_gap_note(data))


def render_volume(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    today = data.today or {}

    def trace(query: str, color: str) -> dict[str, Any] | None:
        rows = [r for r in data.hourly if r["query"] == query]
        if not rows:
            return None
        hours = [datetime.combine(r["created_date"], time(int(r["hour"])), tzinfo=UTC).strftime("%Y-%m-%d %H:%M")
                 for r in rows]
        return {"type": "bar", "x": hours, "y": [r["tweets"] for r in rows], "name": esc(query),
                "marker": {"color": color}}

    queries = data.queries or sorted({r["query"] for r in data.hourly})
    traces = [t for q in queries if (t := trace(q, _color(queries, q)))]
    if today.get("tweets_with_created_at") == 0:
        reason = f"Unknown: none of the day's {today['tweets']:,} tweets carries created_at ({ONLY_DEFAULT_FIELDS})."
    else:
        reason = "No tweet of this day carries a creation time."
    variants = per_query(data, traces or reason, lambda q, c: [t] if (t := trace(q, c)) else
                         "No tweet of this query carries a creation time on this day.")
    parts = [chart("volume-hourly", variants, {"title": {"text": "Tweets per hour of creation (UTC), per query"},
                                                "barmode": "group", "xaxis": {"type": "date"}})]
    missing_time = (today.get("tweets") or 0) - (today.get("tweets_with_created_at") or today.get("tweets") or 0)
    if traces and missing_time > 0:
        parts.append(_note(f"{missing_time:,} tweets carry no created_at and are in no hour."))
    if len(data.window) > 1:
        parts.append(_volume_daily(data, "volume-daily"))
    return "".join(parts)


def _entity_reason(row: dict[str, Any] | None, what: str, scope: str = "this day's tweets",
                   no_tweets: str = NO_TWEETS) -> str:
    if not row or not row.get("tweets"):
        return no_tweets
    if row.get("tweets_with_fields") == 0:
        return f"Unknown: {scope} carry {ONLY_DEFAULT_FIELDS}, so their {what} are not known."
    return f"No {what} in {scope}."


def _entity_variants(data: DashboardData, kind: str, rows: list[dict], label: str, prefix: str,
                     what: str) -> Variants:
    def one(query: str, color: str) -> list[dict] | str:
        mine = [r for r in data.query_entities
                if r["query"] == query and r["kind"] == kind and r["dt"] == data.day]
        return (_bars(mine, "value", "occurrences", color, prefix) if mine
                else _entity_reason(data.query_on(query, data.day), what, "this query's tweets",
                                    "No tweets for this query on this day."))

    everything = _bars(rows, label, "occurrences", PALETTE[0], prefix) if rows else _entity_reason(data.today, what)
    return per_query(data, everything, one)


def render_hashtags(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    variants = _entity_variants(data, "hashtag", data.hashtags, "hashtag", "#", "hashtags")
    return chart("hashtags", variants, {"title": {"text": "Hashtags by use"}}, _bar_height(variants))


def render_mentions_domains(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    mentions = _entity_variants(data, "mention", data.mentions, "username", "@", "mentions")
    domains: Variants = {"": (_bars(data.domains, "domain", "occurrences", "#1f9bb0") if data.domains
                              else _entity_reason(data.today, "links"))}
    left = chart("mentions", mentions, {"title": {"text": "Mentioned accounts"}}, _bar_height(mentions))
    right = chart("domains", domains, {"title": {"text": "Linked domains (all queries)"}}, _bar_height(domains))
    return f'<div class="pair"><div>{left}</div><div>{right}</div></div>'


def render_rising(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    shown = [r for r in data.rising if r["kind"] in ("hashtag", "mention")]
    if not shown:
        return _empty(_entity_reason(data.today, "hashtags or mentions"))
    if all(not r["previous_days"] for r in shown):
        return _empty(f"No earlier day with data in the {RISING_DAYS} days before {data.day.isoformat()}: "
                      "nothing to compare with.")
    rising = [r for r in shown if r["change"] is not None and r["change"] > 0]
    if not rising:
        return _empty(f"No hashtag or mention rose against the {RISING_DAYS} days before.")
    prefix = {"hashtag": "#", "mention": "@"}
    rows = "".join(
        f"<tr><td>{esc(r['kind'])}</td><td>{esc(prefix[r['kind']] + r['value'])}</td>"
        f"<td class=num>{r['occurrences']:,}</td><td class=num>{float(r['previous_mean']):.1f}</td>"
        f'<td class="num up good">+{float(r["change"]):.1f}</td></tr>'
        for r in sorted(rising, key=lambda r: (-float(r["change"]), r["kind"], r["value"]))[:CHART_TOP]
    )
    days = max(r["previous_days"] for r in shown)
    return ('<table class="rising"><thead><tr><th>kind</th><th>topic</th><th>uses on the day</th>'
            f"<th>mean per day before</th><th>change</th></tr></thead><tbody>{rows}</tbody></table>"
            + _note(f"Against the mean of the {days} day(s) with data among the {RISING_DAYS} days before "
                    f"{data.day.isoformat()}; all queries."))


def _author(r: dict) -> str:
    if not r["username"]:
        return f"user {esc(r['author_id'])} (not expanded by the API)"
    return f'<a href="{esc(r["profile_url"])}" target="_blank" rel="noopener">@{esc(r["username"])}</a>'


def render_authors(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    today = data.today or {}
    if not data.authors:
        if today.get("tweets_with_author") == 0:
            return _empty(f"Unknown: no tweet of the day carries author_id ({ONLY_DEFAULT_FIELDS}).")
        return _empty("No authors for this day.")
    top = [r for r in data.authors if r["engagement_rank"] <= TOP_TWEETS and r["engagement"] is not None]
    if top:
        variants: Variants = {"": [{
            "type": "bar", "orientation": "h", "x": [r["engagement"] for r in top][::-1],
            "y": [esc("@" + r["username"] if r["username"] else f"user {r['author_id']}") for r in top][::-1],
            "marker": {"color": "#7a5cc4"}, "name": ""}]}
        by_engagement = chart("authors", variants,
                              {"title": {"text": "By engagement (likes + retweets + replies + quotes)"}}, 420)
    else:
        by_engagement = _empty("Engagement unknown: no tweet of the day carries public_metrics.")
    reach = sorted((r for r in data.authors if r["reach_rank"] <= TOP_TWEETS), key=lambda r: r["reach_rank"])
    rows = "".join(
        f"<tr><td>{r['reach_rank']}</td><td>{_author(r)}</td><td>{esc(r['name'])}</td>"
        f"<td class=num>{esc(_number(r['followers_count'], 'count') if r['username'] else 'unknown')}</td>"
        f"<td class=num>{r['tweets']}</td>"
        f"<td class=num>{esc('unknown' if r['engagement'] is None else _number(r['engagement'], 'count'))}</td></tr>"
        for r in reach
    )
    table = ('<table class="reach"><caption>By follower reach</caption><thead><tr><th>#</th><th>author</th>'
             '<th>name</th><th>followers</th><th>tweets</th><th>engagement</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    return f'<div class="pair"><div>{by_engagement}</div><div>{table}</div></div>'


def render_sentiment(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    today = data.today or {}
    missing_lang = data.missing_lang_tweets
    other = max(0, (today.get("not_scored_tweets") or 0) - missing_lang)
    note = f"{today.get('scored_tweets') or 0:,} English tweets scored; {other:,} in other languages are not scored"
    note += f"; {missing_lang:,} carry no language and are not scored." if missing_lang else "."
    window = data.window
    rows = [data.on(d) for d in window]
    if not any(r and r.get("scored_tweets") for r in rows):
        if today.get("tweets_with_lang") == 0:
            reason = (f"Unknown: no tweet of the day carries a language ({ONLY_DEFAULT_FIELDS}), and VADER "
                      "scores English tweets only.")
        else:
            reason = "No English tweet to score in these days (VADER scores English only)."
        return _empty(reason) + _note(note)
    x = [_iso(d) for d in window]
    traces = [{"type": "bar", "x": x, "y": [r[f"{label}_tweets"] if r else None for r in rows], "name": label,
               "marker": {"color": color}} for label, color in SENTIMENT_COLORS.items()]
    traces.append({"type": "scatter", "mode": "lines+markers", "x": x, "yaxis": "y2", "name": "mean compound",
                   "y": [_value(r, "mean_compound") for r in rows], "line": {"color": "#222"}})
    layout = {"title": {"text": "English tweets by VADER sentiment, per day"}, "barmode": "stack",
              "xaxis": _date_axis(data), "yaxis": {"title": {"text": "tweets"}, "rangemode": "tozero"},
              "yaxis2": {"title": {"text": "mean compound (-1..1)"}, "range": [-1, 1], "overlaying": "y",
                         "side": "right", "showgrid": False, "tickmode": "array", "tickvals": [-1, -0.5, 0, 0.5, 1]},
              "shapes": _gap_shapes(data), "annotations": _gap_labels(data)}
    return chart("sentiment", {"": traces}, layout) + _note(note) + _note(_gap_note(data))


def _lang_label(lang: str) -> str:
    return "language missing" if lang == UNKNOWN_LANG else lang


def render_languages(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    missing = data.missing_lang_tweets
    total = sum(r["tweets"] for r in data.languages)
    if total and missing == total:
        return _empty(f"Unknown: none of the day's {total:,} tweets carries a language ({ONLY_DEFAULT_FIELDS}).")
    pie = {"type": "pie", "labels": [esc(_lang_label(r["lang"])) for r in data.languages],
           "values": [r["tweets"] for r in data.languages], "hole": 0.45, "sort": False}
    note = (f"{missing:,} tweets carry no language: shown as \u201clanguage missing\u201d, which is not another "
            "language." if missing else "")
    return chart("languages", {"": [pie]}, {"title": {"text": "Tweets by language (X's language code)"}}) + _note(note)


def render_top_tweets(data: DashboardData) -> str:
    if data.empty:
        return _empty()
    rows = []
    for i, r in enumerate(data.top_tweets, 1):
        created = r["created_at"].astimezone(UTC).strftime("%H:%M") if r["created_at"] else "unknown"
        if r["username"]:
            author = f"@{esc(r['username'])}"
        elif r["author_id"] is not None:
            author = f"user {esc(r['author_id'])} (not expanded)"
        else:
            author = "unknown"
        engagement = "unknown" if r["engagement"] is None else _number(r["engagement"], "count")
        rows.append(
            f"<tr><td>{i}</td><td>{created}</td><td>{author}</td>"
            f'<td class="text" dir="auto">{esc(r["text"])}</td><td>{esc(r["lang"] or "missing")}</td>'
            f"<td>{esc(r['sentiment'])}</td><td class=num>{esc(engagement)}</td>"
            f'<td><a href="{esc(r["url"])}" target="_blank" rel="noopener">open</a></td></tr>'
        )
    note = ""
    if (data.today or {}).get("tweets_with_counts") == 0:
        note = _empty("Engagement unknown: no tweet of the day carries public_metrics, so these tweets are "
                      "not ranked (shown by id).")
    return (note + '<table class="tweets"><thead><tr><th>#</th><th>UTC</th><th>author</th><th>text</th>'
            "<th>lang</th><th>sentiment</th><th>engagement</th><th>link</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


RENDERERS: dict[str, Callable[[DashboardData], str]] = {
    "headline": render_headline,
    "volume": render_volume,
    "hashtags": render_hashtags,
    "mentions-domains": render_mentions_domains,
    "rising": render_rising,
    "authors": render_authors,
    "sentiment": render_sentiment,
    "languages": render_languages,
    "top-tweets": render_top_tweets,
}


# --- the index --------------------------------------------------------------------------------------

def render_days(data: DashboardData) -> str:
    days = sorted(data.analyzed)
    if not days:
        return _empty("No day analyzed yet.")
    first, last = days[0], days[-1]
    span = (last - first).days + 1
    cells = []
    for d in data.window:
        row, before = data.on(d), data.on(d - timedelta(days=1))
        if d not in data.analyzed:
            cells.append(f'<span class="day missing" data-day="{_iso(d)}"><b>{d:%a %b %d}</b>no data</span>')
            continue
        tweets = row["tweets"] if row else None
        change, tone = "", "none"
        if row and before and tweets is not None and before["tweets"] is not None:
            change, tone = _change(tweets, before["tweets"], "count"), _tone(tweets - before["tweets"], 1)
        cells.append(
            f'<a class="day keep-query" href="{day_page_name(d)}" data-day="{_iso(d)}"><b>{d:%a %b %d}</b>'
            f'{esc(_number(tweets, "count"))} tweets<span class="change {tone}">{esc(change)}</span></a>'
        )
    older = [d for d in days if d < data.window[0]]
    listing = ""
    if older:
        links = " ".join(f'<a class="keep-query" href="{day_page_name(d)}">{_iso(d)}</a>' for d in reversed(older))
        listing = f"<details><summary>{len(older)} earlier days</summary><p>{links}</p></details>"
    return (f'<p class="range">From <b>{_iso(first)}</b> to <b>{_iso(last)}</b>: {len(days)} days with data'
            f"{f', {span - len(days)} without' if span > len(days) else ''}. The last {len(data.window)} days:</p>"
            f'<div class="days">{"".join(cells)}</div>{listing}')


def render_kpi_trends(data: DashboardData) -> str:
    """Small multiples: one panel per headline number, a true date axis, gaps where there is no data."""
    window, x = data.window, [_iso(d) for d in data.window]
    cols = 4
    layout: dict[str, Any] = {"grid": {"rows": 2, "columns": cols, "pattern": "independent"},
                              "showlegend": False, "margin": {"l": 40, "r": 10, "t": 30, "b": 30},
                              "annotations": [], "shapes": []}

    def panel(i: int, kpi: Kpi, row_on: Callable[[date], dict[str, Any] | None], color: str, name: str) -> dict:
        suffix = "" if i == 0 else str(i + 1)
        return {"type": "scatter", "mode": "lines+markers", "x": x, "y": [_value(row_on(d), kpi.column) for d in window],
                "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "name": esc(name), "line": {"color": color},
                "marker": {"size": 5}, "connectgaps": False, "hovertemplate": f"{esc(kpi.label)}: %{{y}}<extra></extra>"}

    for i, kpi in enumerate(HEADLINE):
        suffix = "" if i == 0 else str(i + 1)
        yaxis: dict[str, Any] = {"rangemode": "tozero"} if kpi.kind == "count" else {}
        if kpi.kind == "share":
            yaxis = {"tickformat": ".1~%", "rangemode": "tozero"}
        elif kpi.kind == "score":
            yaxis = {"range": [-1, 1]}
        layout[f"xaxis{suffix}"] = _date_axis(data, tickformat="%b %d", nticks=4)
        layout[f"xaxis{suffix}"].pop("dtick", None)
        layout[f"yaxis{suffix}"] = yaxis
        title = kpi.label + ("" if kpi.per_query else " (all queries)")
        layout["annotations"].append({"text": esc(title), "xref": f"x{suffix} domain", "yref": f"y{suffix} domain",
                                      "x": 0, "y": 1.02, "xanchor": "left", "yanchor": "bottom",
                                      "showarrow": False, "font": {"size": 12}})
        layout["shapes"] += _gap_shapes(data, f"x{suffix}", f"y{suffix} domain")
    everything = [panel(i, k, data.on, PALETTE[0], "all queries") for i, k in enumerate(HEADLINE)]

    def one(query: str, color: str) -> list[dict]:
        def row_on(day: date) -> dict[str, Any] | None:
            return data.query_on(query, day)

        return [panel(i, k, row_on, color, query) if k.per_query else panel(i, k, data.on, PALETTE[-1], "all queries")
                for i, k in enumerate(HEADLINE)]

    unknown = "Lines break where a value is unknown (no tweet carried its inputs); grey bands are days without data."
    return chart("kpi-trends", per_query(data, everything, one), layout, 520) + _note(unknown)


def _entity_trend(data: DashboardData, kind: str, prefix: str, what: str) -> str:
    window, x = data.window, [_iso(d) for d in data.window]

    def traces(rows: list[dict]) -> list[dict]:
        totals: dict[str, int] = {}
        for r in rows:
            totals[r["value"]] = totals.get(r["value"], 0) + r["occurrences"]
        top = sorted(totals, key=lambda v: (-totals[v], v))[:TREND_TOP]
        out = []
        for i, value in enumerate(top):
            by_day = {r["dt"]: r["occurrences"] for r in rows if r["value"] == value}
            out.append({"type": "scatter", "mode": "lines+markers", "x": x, "y": [by_day.get(d) for d in window],
                        "name": esc(prefix + value), "line": {"color": PALETTE[i % len(PALETTE)]},
                        "connectgaps": False})
        return out

    def reason(rows_on: Callable[[date], dict[str, Any] | None], scope: str) -> str:
        if all((r := rows_on(d)) is None or r.get("tweets_with_fields") == 0 for d in window):
            return f"Unknown: {scope} carry {ONLY_DEFAULT_FIELDS}, so their {what} are not known."
        return f"No {what} in {scope}."

    mine = [r for r in data.entity_trends if r["kind"] == kind]
    everything = traces(mine) or reason(data.on, "these days' tweets")

    def one(query: str, color: str) -> list[dict] | str:
        rows = [r for r in data.query_entities if r["query"] == query and r["kind"] == kind]

        def row_on(day: date) -> dict[str, Any] | None:
            return data.query_on(query, day)

        return traces(rows) or reason(row_on, "this query's tweets")

    layout = {"title": {"text": f"Uses per day of the {TREND_TOP} most used {what} of these days"},
              "xaxis": _date_axis(data), "yaxis": {"rangemode": "tozero"},
              "shapes": _gap_shapes(data), "annotations": _gap_labels(data)}
    note = (f"A line breaks on a day the {what[:-1]} was not among that day's top {what} by use (the metrics keep "
            "the top N per day), and on days without data (grey bands).")
    return chart(f"{kind}-trends", per_query(data, everything, one), layout, 400) + _note(note)


INDEX_RENDERERS: dict[str, Callable[[DashboardData], str]] = {
    "days": render_days,
    "kpi-trends": render_kpi_trends,
    "volume-trend": lambda data: _volume_daily(data, "volume-trend"),
    "hashtag-trends": lambda data: _entity_trend(data, "hashtag", "#", "hashtags"),
    "mention-trends": lambda data: _entity_trend(data, "mention", "@", "mentions"),
    "rising": render_rising,
}


# --- the page ------------------------------------------------------------------------------------------

STYLE = """
[hidden]{display:none!important}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f9;color:#1d2733}
header{background:#15202b;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c5ced8;font-size:13px}main{padding:16px 24px;max-width:1400px;margin:auto}
nav{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin-top:8px;font-size:14px}
nav a{color:#9cc7ff}nav .disabled{color:#7f8b97}nav .gap{color:#f0d58c;font-size:12px}
nav label{margin-left:auto;color:#c5ced8}nav select{font-size:14px;max-width:320px}
section{background:#fff;border-radius:8px;padding:12px 16px;margin-bottom:16px;box-shadow:0 1px 2px #0001}
section h2{font-size:17px;margin:4px 0 8px}.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.card{border:1px solid #e3e8ee;border-radius:6px;padding:10px}.card .label{font-size:12px;color:#5b6b7c}
.card .value{font-size:26px;font-weight:600}.card .value.unknown{color:#8a6d1f;font-style:italic}
.change{font-size:12px;color:#5b6b7c}.change.good{color:#1e7d45}.change.bad{color:#c23b3b}
.change.neutral.up,.change.neutral.down{color:#3b6fb6}.why{font-size:11px;color:#8a6d1f}
.spark{display:block;width:100%;height:28px;margin-top:6px}.spark path{fill:none;stroke:#3b6fb6;stroke-width:1.5}
.spark circle{fill:#3b6fb6}.spark .gap{fill:#9aa5b1;opacity:.35}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:16px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e3e8ee;padding:5px 6px;text-align:left;vertical-align:top}
td.num{text-align:right}td.text{white-space:pre-wrap;max-width:620px}caption{text-align:left;font-weight:600;padding:6px 0}
td.up.good{color:#1e7d45}
.empty{background:#fff7e0;border:1px solid #f0d58c;border-radius:6px;padding:12px;font-weight:600}
.note{font-size:12px;color:#5b6b7c}.all-queries{display:none;font-size:12px;font-weight:400;color:#8a6d1f;margin-left:8px}
body[data-query]:not([data-query=""]) .all-queries{display:inline}
.days{display:grid;grid-template-columns:repeat(auto-fill,minmax(118px,1fr));gap:8px}
.day{display:block;border:1px solid #e3e8ee;border-radius:6px;padding:8px;font-size:13px;color:#1d2733;text-decoration:none}
.day b{display:block;font-size:12px;color:#5b6b7c}.day .change{display:block}
a.day:hover{border-color:#3b6fb6}.day.missing{background:repeating-linear-gradient(45deg,#f4f6f9,#f4f6f9 6px,#e3e8ee 6px,#e3e8ee 12px);color:#5b6b7c}
.plotly-missing{display:none}.no-plotly .plotly-missing{display:block;color:#1d2733}
"""

# Draws every chart from its spec, shows the query's variants, keeps the query across links (#query=...).
# A page opened through a presigned S3 URL cannot load its relative asset: the link then names a presigned
# URL of that same object in `#plotly=`, loaded only when it has the asset's host and path.
SCRIPT = """(() => {
  const config = %s;
  const params = new URLSearchParams(location.hash.slice(1));
  function start() {
    const template = JSON.parse(document.getElementById("plotly-template").textContent);
    const charts = [...document.querySelectorAll("div.chart")].map(div => (
      {div, note: div.nextElementSibling, spec: JSON.parse(document.getElementById(div.dataset.spec).textContent)}));
    const select = document.getElementById("query-filter");
    if (!window.Plotly) document.body.classList.add("no-plotly");
    function show(query) {
      document.body.dataset.query = query;
      document.querySelectorAll("[data-query]:not(body)").forEach(el => { el.hidden = el.dataset.query !== query; });
      for (const {div, note, spec} of charts) {
        const variant = Object.hasOwn(spec.variants, query) ? spec.variants[query] : spec.variants[""];
        if (typeof variant === "string") {
          div.hidden = true; note.textContent = variant; note.hidden = false;
          continue;
        }
        note.hidden = true; div.hidden = false;
        if (window.Plotly) Plotly.react(div, variant, Object.assign({template}, spec.layout), config);
      }
    }
    let query = params.get("query") || "";
    if (!select || ![...select.options].some(o => o.value === query)) query = "";
    if (select) {
      select.value = query;
      select.addEventListener("change", () => {
        location.replace(select.value ? "#query=" + encodeURIComponent(select.value) : "#");
        show(select.value);
      });
    }
    document.querySelectorAll("a.keep-query").forEach(a => a.addEventListener("click", () => {
      const hash = select && select.value ? "#query=" + encodeURIComponent(select.value) : "";
      a.href = a.getAttribute("href").split("#")[0] + hash;
    }));
    show(query);
  }
  const fallback = params.get("plotly");
  if (!window.Plotly && fallback) {
    const expected = new URL(document.getElementById("plotly-asset").getAttribute("src"), location.href);
    let url = null;
    try { url = new URL(fallback); } catch (e) { url = null; }
    if (url && url.origin === expected.origin && url.pathname === expected.pathname) {
      const script = document.createElement("script");
      script.src = url.href;
      script.onload = script.onerror = start;
      document.head.append(script);
      return;
    }
  }
  start();
})();"""


def _query_filter(data: DashboardData) -> str:
    if len(data.queries) < 2:
        return ""
    options = "".join(f'<option value="{esc(q)}">{esc(q)}</option>' for q in data.queries)
    return (f'<label>Query <select id="query-filter"><option value="">All queries</option>{options}'
            "</select></label>")


def _day_nav(data: DashboardData) -> str:
    before, after = data.neighbours()
    parts = ['<a class="keep-query" rel="index" href="index.html">Overview of all days</a>']
    for neighbour, rel, arrow in ((before, "prev", "←"), (after, "next", "→")):
        if neighbour is None:
            parts.append(f'<span class="disabled">{"no earlier day" if rel == "prev" else "no later day"}</span>')
            continue
        label = f"{arrow} {neighbour.isoformat()}" if rel == "prev" else f"{neighbour.isoformat()} {arrow}"
        gap = abs((neighbour - data.day).days) - 1
        parts.append(f'<a class="keep-query" rel="{rel}" href="{day_page_name(neighbour)}">{label}</a>'
                     + (f'<span class="gap">{gap} day{"s" if gap > 1 else ""} without data between</span>'
                        if gap > 0 else ""))
    return "".join(parts)


def _page(title: str, heading: str, subtitle: str, nav: str, sections: dict[str, str],
          renderers: dict[str, Callable[[DashboardData], str]], data: DashboardData, kind: str,
          inputs: str | None = None) -> str:
    asset = plotly_asset_name()
    marker = f'\n<meta name="{INPUTS_META}" content="{esc(inputs)}">' if inputs else ""
    body = "".join(
        f'<section id="{sid}"><h2>{esc(name)}{_all_queries(sid)}</h2>{renderers[sid](data)}</section>'
        for sid, name in sections.items()
    )
    template = _json(pio.templates["plotly_white"].to_plotly_json())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{marker}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{STYLE}</style>
<script id="plotly-asset" src="{asset}"></script>
<script type="application/json" id="plotly-template">{template}</script>
</head><body>
<header><h1>{esc(heading)}</h1><p>{subtitle}</p>
<nav>{nav}{_query_filter(data)}</nav>
<p class="empty plotly-missing">The charts need {esc(asset)} next to this page: open the page from the dashboard
folder (the bucket's dashboard/ prefix, or its local copy), where every page finds it.</p></header>
<main data-page="{kind}" data-day="{data.day.isoformat()}" data-empty="{str(data.empty).lower()}">{body}</main>
<script>{SCRIPT % _json(PLOTLY_CONFIG)}</script>
</body></html>
"""


def _generated(generated_at: datetime | None) -> str:
    return (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")


def render_dashboard(data: DashboardData, generated_at: datetime | None = None, inputs: str | None = None) -> str:
    """The day's page: headline with changes and sparklines, then one section per part of the day. `inputs`
    (what the pages were built from) goes in a meta tag near the top, for `page_inputs`."""
    queries = sorted({r["query"] for r in data.volume_daily if r["dt"] == data.day})
    subtitle = (f"Queries: {esc(', '.join(queries) or 'none')} · generated {_generated(generated_at)} · "
                "all times UTC")
    return _page(f"X pipeline dashboard {data.day.isoformat()}", f"X pipeline: daily dashboard for {data.day}",
                 subtitle, _day_nav(data), SECTIONS, RENDERERS, data, "day", inputs)


def page_inputs(page: bytes) -> str | None:
    """The `inputs` a day page was rendered with (read from its first bytes), if any."""
    found = _INPUTS.search(page[:1024])
    return found.group(1).decode() if found else None


def render_index(data: DashboardData, generated_at: datetime | None = None) -> str:
    """The index: every day, and the trends of the last days up to the newest (`data.day`)."""
    days = sorted(data.analyzed)
    span = f"{days[0].isoformat()} to {days[-1].isoformat()}" if days else "no day yet"
    nav = (f'<a class="keep-query" rel="last" href="{day_page_name(data.day)}">Newest day: {data.day}</a>'
           if days else "")
    subtitle = f"{span} · trends over the last {len(data.window)} days · generated {_generated(generated_at)}"
    return _page(f"X pipeline dashboard {span}", f"X pipeline dashboard: {span}", esc(subtitle), nav,
                 {**INDEX_SECTIONS, "rising": f"Rising topics on {data.day.isoformat()}"}, INDEX_RENDERERS, data,
                 "index")
