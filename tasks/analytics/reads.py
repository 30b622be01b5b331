"""What the dashboard reads: the `dashboard_*` views, as a BI tool would, for a day and the days before it.

A day page and the index are rendered from one `DashboardData`: the day's rows, and for trends the rows
of the last `history_days` days (the metrics tables hold one row set per analyzed day, so a day that was
never analyzed has no row: a missing day, shown as a gap, never as a zero).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from tasks.analytics.analyze import UNKNOWN_LANG, day_literal
from tasks.schema import qualified
from tasks.warehouse.base import Warehouse

HISTORY_DAYS = 30
TOP_TWEETS = 10

DAILY_COLUMNS = [
    "dt", "tweets", "authors", "engagement", "reply_share", "quote_share", "retweet_share",
    "scored_tweets", "not_scored_tweets", "positive_tweets", "neutral_tweets", "negative_tweets",
    "mean_compound", "positive_share", "tweets_with_fields", "tweets_with_counts", "tweets_with_author",
    "tweets_with_created_at", "tweets_with_lang",
]
QUERY_DAILY_COLUMNS = [
    "dt", "query", "tweets", "authors", "engagement", "reply_share", "quote_share", "retweet_share",
    "tweets_with_fields", "tweets_with_counts", "tweets_with_author",
]


@dataclass
class DashboardData:
    """What a page shows, as read from the views; rows are dicts keyed by view column."""

    day: date
    days: list[date] = field(default_factory=list)  # every analyzed day, oldest first (navigation, index)
    daily: list[dict[str, Any]] = field(default_factory=list)  # dashboard_daily over the window, oldest first
    volume_daily: list[dict[str, Any]] = field(default_factory=list)  # tweets per query per day, the window
    query_daily: list[dict[str, Any]] = field(default_factory=list)  # dashboard_query_daily over the window
    hourly: list[dict[str, Any]] = field(default_factory=list)
    hashtags: list[dict[str, Any]] = field(default_factory=list)  # the day's top hashtags, all queries
    mentions: list[dict[str, Any]] = field(default_factory=list)
    domains: list[dict[str, Any]] = field(default_factory=list)
    authors: list[dict[str, Any]] = field(default_factory=list)
    languages: list[dict[str, Any]] = field(default_factory=list)
    top_tweets: list[dict[str, Any]] = field(default_factory=list)
    entity_trends: list[dict[str, Any]] = field(default_factory=list)  # hashtags and mentions over the window
    query_entities: list[dict[str, Any]] = field(default_factory=list)  # per query, over the window
    rising: list[dict[str, Any]] = field(default_factory=list)  # the day's rising hashtags, mentions, domains
    history_days: int = HISTORY_DAYS

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

    @property
    def analyzed(self) -> set[date]:
        return set(self.days) | {r["dt"] for r in self.daily}

    @property
    def window(self) -> list[date]:
        """Every calendar day of the trend window, oldest first, days without data included: from the window's
        start, or from the first analyzed day when that is later, to the day."""
        start = self.day - timedelta(days=self.history_days - 1)
        first = min(self.analyzed | {self.day})
        start = max(start, first)
        return [start + timedelta(days=i) for i in range((self.day - start).days + 1)]

    @property
    def missing(self) -> list[date]:
        """Days of the window that were never analyzed: no data, which is not zero tweets."""
        analyzed = self.analyzed
        return [d for d in self.window if d not in analyzed]

    @property
    def queries(self) -> list[str]:
        """The queries of the window, for the per-query filter."""
        return sorted({r["query"] for r in self.volume_daily} | {r["query"] for r in self.query_daily})

    def query_on(self, query: str, day: date) -> dict[str, Any] | None:
        return next((r for r in self.query_daily if r["query"] == query and r["dt"] == day), None)

    def neighbours(self) -> tuple[date | None, date | None]:
        """The analyzed days just before and after the day (the pages the navigation links)."""
        before = [d for d in self.days if d < self.day]
        after = [d for d in self.days if d > self.day]
        return (before[-1] if before else None), (after[0] if after else None)

    @property
    def missing_lang_tweets(self) -> int:
        """Tweets of the day whose response carried no language (not "another language")."""
        return sum(r["tweets"] for r in self.languages if r["lang"] == UNKNOWN_LANG)


def _select(warehouse: Warehouse, view: str, columns: list[str], where: str, order: str) -> list[dict]:
    cols = ", ".join(f'"{c}"' for c in columns)
    rows = warehouse.query(
        f"SELECT {cols} FROM {qualified(view, warehouse.schema)} WHERE {where} ORDER BY {order}"
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _entities(warehouse: Warehouse, view: str, column: str, where: str) -> list[dict]:
    """Rows of an entity view (`hashtag`, `username` or `domain` column), that value also as `value`."""
    rows = _select(warehouse, view, ["dt", column, "occurrences", "tweets", "rank"], where, '"dt", "rank"')
    return [{**r, "value": r[column]} for r in rows]


def analyzed_days(warehouse: Warehouse) -> list[date]:
    """Every day with metrics (a day analyzed without tweets too), oldest first."""
    return [r["dt"] for r in _select(warehouse, "dashboard_daily", ["dt"], '"dt" IS NOT NULL', '"dt"')]


def load_dashboard_data(warehouse: Warehouse, day: date, history_days: int = HISTORY_DAYS,
                        days: list[date] | None = None) -> DashboardData:
    """Read the day, and the window of `history_days` days ending on it, from the dashboard views.

    `days` (every analyzed day) is read when not given; a caller rendering several pages reads it once."""
    on_day = f'"dt" = {day_literal(day)}'
    window = f'"dt" > {day_literal(day - timedelta(days=history_days))} AND "dt" <= {day_literal(day)}'
    hashtags = _entities(warehouse, "dashboard_top_hashtags", "hashtag", window)
    mentions = _entities(warehouse, "dashboard_top_mentions", "username", window)
    return DashboardData(
        day=day,
        days=analyzed_days(warehouse) if days is None else days,
        daily=_select(warehouse, "dashboard_daily", DAILY_COLUMNS, window, '"dt"'),
        volume_daily=_select(warehouse, "dashboard_volume_daily", ["dt", "query", "tweets"], window, '"dt", "query"'),
        query_daily=_select(warehouse, "dashboard_query_daily", QUERY_DAILY_COLUMNS, window, '"dt", "query"'),
        hourly=_select(warehouse, "dashboard_volume_hourly", ["query", "created_date", "hour", "tweets"],
                       on_day, '"query", "created_date", "hour"'),
        hashtags=[r for r in hashtags if r["dt"] == day],
        mentions=[r for r in mentions if r["dt"] == day],
        domains=_entities(warehouse, "dashboard_top_domains", "domain", on_day),
        authors=_select(warehouse, "dashboard_top_authors", [
            "author_id", "username", "name", "followers_count", "tweets", "engagement", "engagement_rank",
            "reach_rank", "profile_url"], on_day, '"engagement_rank"'),
        languages=_select(warehouse, "dashboard_languages", ["lang", "tweets", "share"], on_day,
                          '"tweets" DESC, "lang"'),
        top_tweets=_select(warehouse, "dashboard_tweets", [
            "tweet_id", "created_at", "author_id", "username", "lang", "text", "like_count", "retweet_count",
            "reply_count", "quote_count", "engagement", "sentiment", "url"],
            f'{on_day} AND "engagement_rank" <= {TOP_TWEETS}', '"engagement_rank"'),
        entity_trends=[{"kind": "hashtag", **r} for r in hashtags] + [{"kind": "mention", **r} for r in mentions],
        query_entities=_select(warehouse, "dashboard_query_top_entities",
                               ["dt", "query", "kind", "value", "occurrences", "rank"],
                               f"{window} AND \"kind\" IN ('hashtag', 'mention')", '"dt", "query", "kind", "rank"'),
        rising=_select(warehouse, "dashboard_rising_topics", [
            "kind", "value", "occurrences", "previous_occurrences", "previous_days", "previous_mean", "change",
            "rank"], on_day, '"kind", "rank"'),
        history_days=history_days,
    )
