"""Daily metrics: computed in the warehouse with portable SQL, sentiment with VADER in polars.

A day's metrics come from the warehouse rows whose `dt` is that day, and are stored in the metrics
tables of `tasks/schema.py` (`METRIC_TABLES`). Recomputing a day deletes its rows from every metrics
table and inserts them again in one transaction, so re-runs and backfills leave the same rows and a
failure leaves the previous ones. `dashboard_*` views over those tables are what BI tools read.

The SQL sticks to what DuckDB, PostgreSQL and Redshift all accept: no CTEs inside INSERT, no FILTER
clauses, no `::` casts, integer ratios cast to DOUBLE PRECISION, window functions over subqueries,
timestamps turned to UTC with `AT TIME ZONE 'UTC'` (a session time zone never shifts an hour), string
literals in UNIONs cast to VARCHAR (Redshift would type them CHAR(n)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from tasks.schema import METRIC_TABLES, qualified, quote_ident
from tasks.warehouse import Warehouse

DEFAULT_TOP_N = 20
SENTIMENT_INSERT_BATCH = 500
# VADER's authors' thresholds on the compound score.
POSITIVE_AT, NEGATIVE_AT = 0.05, -0.05
SCORED_LANGS = frozenset({"en"})
NOT_SCORED = "not scored"
UNKNOWN_LANG = "unknown"


@dataclass
class DayMetrics:
    day: date
    rows: dict[str, int] = field(default_factory=dict)  # metrics table -> rows for the day
    tweets: int = 0
    scored_tweets: int = 0


def day_literal(day: date) -> str:
    return f"DATE '{day.isoformat()}'"


def _engagement(alias: str) -> str:
    return " + ".join(
        f"COALESCE({alias}.{c}, 0)" for c in ("like_count", "retweet_count", "reply_count", "quote_count")
    )


def _share(part: str, whole: str) -> str:
    return f"CASE WHEN {whole} = 0 THEN NULL ELSE CAST({part} AS DOUBLE PRECISION) / {whole} END"


def _insert(table: str, schema: str | None, select: str) -> str:
    cols = ", ".join(quote_ident(c) for c in METRIC_TABLES[table].column_names)
    return f"INSERT INTO {qualified(table, schema)} ({cols})\n{select}"


def metric_statements(day: date, schema: str | None, top_n: int = DEFAULT_TOP_N) -> list[str]:
    """INSERT ... SELECT for every metrics table computed in SQL, for `day` (sentiment rows excluded)."""
    d = day_literal(day)

    def t(name: str) -> str:
        return qualified(name, schema)

    def total(expr: str) -> str:
        return f"CAST(COALESCE(SUM({expr}), 0) AS BIGINT)"

    flags = {kind: f"r.is_{kind}" for kind in ("reply", "quote", "retweet")}
    daily = f"""SELECT {d}, COUNT(*), COUNT(DISTINCT t.author_id), {total(_engagement("t"))},
  {total("t.like_count")}, {total("t.retweet_count")}, {total("t.reply_count")}, {total("t.quote_count")},
  {total(flags["reply"])}, {total(flags["quote"])}, {total(flags["retweet"])},
  {_share(total(flags["reply"]), "COUNT(*)")}, {_share(total(flags["quote"]), "COUNT(*)")},
  {_share(total(flags["retweet"]), "COUNT(*)")}
FROM {t("tweets")} t
LEFT JOIN (
  SELECT tweet_id,
    MAX(CASE WHEN reference_type = 'replied_to' THEN 1 ELSE 0 END) AS is_reply,
    MAX(CASE WHEN reference_type = 'quoted' THEN 1 ELSE 0 END) AS is_quote,
    MAX(CASE WHEN reference_type = 'retweeted' THEN 1 ELSE 0 END) AS is_retweet
  FROM {t("tweet_references")} WHERE dt = {d} GROUP BY tweet_id
) r ON r.tweet_id = t.tweet_id
WHERE t.dt = {d}"""

    volume_daily = f"""SELECT {d}, q.query, COUNT(DISTINCT q.tweet_id)
FROM {t("tweet_queries")} q WHERE q.dt = {d} GROUP BY q.query"""

    utc = "t.created_at AT TIME ZONE 'UTC'"
    created_date, hour = f"CAST({utc} AS DATE)", f"CAST(EXTRACT(HOUR FROM {utc}) AS BIGINT)"
    volume_hourly = f"""SELECT {d}, q.query, {created_date}, {hour}, COUNT(DISTINCT t.tweet_id)
FROM {t("tweet_queries")} q JOIN {t("tweets")} t ON t.tweet_id = q.tweet_id
WHERE q.dt = {d} AND t.created_at IS NOT NULL
GROUP BY q.query, {created_date}, {hour}"""

    entity_sources = {"hashtag": ("tweet_hashtags", "tag"), "mention": ("tweet_mentions", "username"),
                      "domain": ("tweet_urls", "domain")}
    entities = "\nUNION ALL\n".join(
        f"""SELECT {d}, CAST('{kind}' AS VARCHAR(16)), e.value, e.occurrences, e.tweets, e.rn FROM (
  SELECT g.value, g.occurrences, g.tweets,
    ROW_NUMBER() OVER (ORDER BY g.occurrences DESC, g.tweets DESC, g.value) AS rn
  FROM (
    SELECT LOWER({col}) AS value, COUNT(*) AS occurrences, COUNT(DISTINCT tweet_id) AS tweets
    FROM {t(table)} WHERE dt = {d} AND {col} IS NOT NULL AND {col} <> '' GROUP BY LOWER({col})
  ) g
) e WHERE e.rn <= {int(top_n)}"""
        for kind, (table, col) in entity_sources.items()
    )

    authors = f"""SELECT {d}, a.author_id, u.username, u.name, a.followers, a.tweets, a.engagement,
  a.engagement_rank, a.reach_rank
FROM (
  SELECT g.author_id, g.followers, g.tweets, g.engagement,
    ROW_NUMBER() OVER (ORDER BY g.engagement DESC, g.author_id) AS engagement_rank,
    ROW_NUMBER() OVER (ORDER BY COALESCE(g.followers, -1) DESC, g.author_id) AS reach_rank
  FROM (
    SELECT t.author_id, MAX(u.followers_count) AS followers, COUNT(*) AS tweets,
      {total(_engagement("t"))} AS engagement
    FROM {t("tweets")} t LEFT JOIN {t("users")} u ON u.user_id = t.author_id
    WHERE t.dt = {d} AND t.author_id IS NOT NULL GROUP BY t.author_id
  ) g
) a LEFT JOIN {t("users")} u ON u.user_id = a.author_id
WHERE a.engagement_rank <= {int(top_n)} OR a.reach_rank <= {int(top_n)}"""

    lang = f"COALESCE(NULLIF(lang, ''), '{UNKNOWN_LANG}')"
    languages = f"""SELECT {d}, l.lang, l.tweets, CAST(l.tweets AS DOUBLE PRECISION) / n.total
FROM (SELECT {lang} AS lang, COUNT(*) AS tweets FROM {t("tweets")} WHERE dt = {d} GROUP BY {lang}) l
CROSS JOIN (SELECT COUNT(*) AS total FROM {t("tweets")} WHERE dt = {d}) n"""

    counts = ("like_count", "retweet_count", "reply_count", "quote_count")
    m_cols = ", ".join(counts)
    gains = ", ".join(
        total(f"CASE WHEN p.tweet_id IS NOT NULL THEN COALESCE(c.{col}, 0) - COALESCE(p.{col}, 0) END")
        for col in counts
    )
    growth = f"""SELECT {d}, COUNT(*), COUNT(p.tweet_id), {total("c.engagement")}, {total("p.engagement")},
  {total("CASE WHEN p.tweet_id IS NOT NULL THEN c.engagement - p.engagement END")}, {gains}
FROM (
  SELECT m.tweet_id, {m_cols}, {_engagement("m")} AS engagement
  FROM {t("tweet_metrics_daily")} m WHERE m.metric_date = {d}
) c
LEFT JOIN (
  SELECT m.tweet_id, {m_cols}, {_engagement("m")} AS engagement,
    ROW_NUMBER() OVER (PARTITION BY m.tweet_id ORDER BY m.metric_date DESC) AS rn
  FROM {t("tweet_metrics_daily")} m
  WHERE m.metric_date < {d}
    AND m.tweet_id IN (SELECT tweet_id FROM {t("tweet_metrics_daily")} WHERE metric_date = {d})
) p ON p.tweet_id = c.tweet_id AND p.rn = 1"""

    return [
        _insert("metrics_daily", schema, daily),
        _insert("metrics_volume_daily", schema, volume_daily),
        _insert("metrics_volume_hourly", schema, volume_hourly),
        _insert("metrics_top_entities", schema, entities),
        _insert("metrics_top_authors", schema, authors),
        _insert("metrics_languages", schema, languages),
        _insert("metrics_engagement_growth", schema, growth),
    ]


def sentiment_daily_statement(day: date, schema: str | None) -> str:
    d = day_literal(day)

    def count_if(cond: str) -> str:
        return f"CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT)"

    select = f"""SELECT {d}, COUNT(*), {count_if("scored")}, {count_if("NOT scored")},
  {count_if("label = 'positive'")}, {count_if("label = 'neutral'")}, {count_if("label = 'negative'")},
  AVG(compound)
FROM {qualified("metrics_tweet_sentiment", schema)} WHERE dt = {d}"""
    return _insert("metrics_sentiment_daily", schema, select)


def score_sentiment(tweets: pl.DataFrame) -> pl.DataFrame:
    """VADER scores for English tweets (`tweet_id`, `lang`, `text`); other languages are "not scored".

    VADER's lexicon is English: a score for another language would be a guess, so it is left null.
    """
    analyzer = SentimentIntensityAnalyzer()
    scored = pl.col("lang").is_in(list(SCORED_LANGS)).fill_null(False) & pl.col("text").is_not_null()
    frame = tweets.select("tweet_id", scored.alias("scored"), "text")
    score_dtype = pl.Struct({"neg": pl.Float64, "neu": pl.Float64, "pos": pl.Float64, "compound": pl.Float64})
    scores = (
        pl.when(pl.col("scored"))
        .then(pl.col("text").map_elements(analyzer.polarity_scores, return_dtype=score_dtype))
        .alias("s")
    )
    frame = frame.with_columns(scores).unnest("s")
    label = (
        pl.when(~pl.col("scored")).then(pl.lit(NOT_SCORED))
        .when(pl.col("compound") >= POSITIVE_AT).then(pl.lit("positive"))
        .when(pl.col("compound") <= NEGATIVE_AT).then(pl.lit("negative"))
        .otherwise(pl.lit("neutral"))
    )
    return frame.select(
        "tweet_id", "scored", label.alias("label"), "compound",
        pl.col("pos").alias("positive"), pl.col("neu").alias("neutral"), pl.col("neg").alias("negative"),
    )


def _sql_value(value: Any) -> str:
    """Literals for the sentiment rows: ids, booleans, floats and labels from a fixed set only."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if value in (NOT_SCORED, "positive", "neutral", "negative"):
        return f"'{value}'"
    raise ValueError(f"unexpected sentiment value {value!r}")


def sentiment_insert_statements(day: date, schema: str | None, sentiment: pl.DataFrame,
                                batch: int = SENTIMENT_INSERT_BATCH) -> list[str]:
    """Multi-row INSERTs of the day's per-tweet sentiment.

    The `Warehouse` interface runs SQL scripts; these rows carry no user text, so literal VALUES are
    safe and portable (a day's English tweets are tens of thousands of small rows, not a bulk load).
    """
    table = METRIC_TABLES["metrics_tweet_sentiment"]
    frame = sentiment.select(pl.lit(day, dtype=pl.Date).alias("dt"), *table.column_names[1:])
    cols = ", ".join(quote_ident(c) for c in table.column_names)
    statements = []
    for chunk in frame.iter_slices(batch):
        values = ",\n".join(
            "(" + ", ".join([day_literal(day)] + [_sql_value(v) for v in row[1:]]) + ")"
            for row in chunk.iter_rows()
        )
        statements.append(f"INSERT INTO {qualified(table.name, schema)} ({cols}) VALUES\n{values}")
    return statements


def ensure_metric_objects(warehouse: Warehouse) -> None:
    """Create missing metrics tables and (re)create the dashboard views, in one transaction."""
    tables = [warehouse.design(t).create_sql(warehouse.dialect, warehouse.schema) for t in METRIC_TABLES.values()]
    warehouse.execute_script(tables + view_statements(warehouse.schema))


def read_day_texts(warehouse: Warehouse, day: date) -> pl.DataFrame:
    """The day's tweets as VADER reads them: the full text of long posts, else `text`."""
    rows = warehouse.query(
        f"SELECT tweet_id, lang, COALESCE(note_text, text) FROM {qualified('tweets', warehouse.schema)} "
        f"WHERE dt = {day_literal(day)}"
    )
    return pl.DataFrame(rows, schema={"tweet_id": pl.Int64, "lang": pl.String, "text": pl.String}, orient="row")


def analyze_day(warehouse: Warehouse, day: date, top_n: int = DEFAULT_TOP_N) -> DayMetrics:
    """Recompute every metrics table's rows for `day`: delete and insert in one transaction."""
    ensure_metric_objects(warehouse)
    sentiment = score_sentiment(read_day_texts(warehouse, day))
    schema = warehouse.schema
    deletes = [f"DELETE FROM {qualified(name, schema)} WHERE dt = {day_literal(day)}" for name in METRIC_TABLES]
    warehouse.execute_script(
        deletes
        + metric_statements(day, schema, top_n)
        + sentiment_insert_statements(day, schema, sentiment)
        + [sentiment_daily_statement(day, schema)]
    )
    rows = {
        name: warehouse.query(
            f"SELECT COUNT(*) FROM {qualified(name, schema)} WHERE dt = {day_literal(day)}"
        )[0][0]
        for name in METRIC_TABLES
    }
    return DayMetrics(day, rows, tweets=sentiment.height, scored_tweets=int(sentiment["scored"].sum()))


# --- BI views --------------------------------------------------------------------------------------

TWEET_URL_PREFIX = "https://x.com/i/web/status/"
PROFILE_URL_PREFIX = "https://x.com/"


def view_selects(schema: str | None) -> dict[str, str]:
    """`dashboard_*` views: stable, documented columns for BI tools, one row grain each."""

    def t(name: str) -> str:
        return qualified(name, schema)

    def entity(kind: str, column: str) -> str:
        return (f'SELECT dt, value AS {column}, occurrences, tweets, "rank" FROM {t("metrics_top_entities")} '
                f"WHERE kind = '{kind}'")

    return {
        "dashboard_daily": f"""SELECT m.dt, m.tweets, m.authors, m.engagement, m.like_count, m.retweet_count,
  m.reply_count, m.quote_count, m.reply_tweets, m.quote_tweets, m.retweet_tweets,
  m.reply_share, m.quote_share, m.retweet_share,
  s.scored_tweets, s.not_scored_tweets, s.positive_tweets, s.neutral_tweets, s.negative_tweets, s.mean_compound,
  {_share("s.positive_tweets", "s.scored_tweets")} AS positive_share,
  {_share("s.negative_tweets", "s.scored_tweets")} AS negative_share
FROM {t("metrics_daily")} m LEFT JOIN {t("metrics_sentiment_daily")} s ON s.dt = m.dt""",
        "dashboard_volume_daily": f"SELECT dt, query, tweets FROM {t('metrics_volume_daily')}",
        "dashboard_volume_hourly": f'SELECT dt, query, created_date, "hour", tweets FROM {t("metrics_volume_hourly")}',
        "dashboard_top_hashtags": entity("hashtag", "hashtag"),
        "dashboard_top_mentions": entity("mention", "username"),
        "dashboard_top_domains": entity("domain", "domain"),
        "dashboard_top_authors": f"""SELECT dt, author_id, username, name, followers_count, tweets, engagement,
  engagement_rank, reach_rank, '{PROFILE_URL_PREFIX}' || username AS profile_url
FROM {t("metrics_top_authors")}""",
        "dashboard_languages": f"SELECT dt, lang, tweets, share FROM {t('metrics_languages')}",
        "dashboard_sentiment_daily": f"""SELECT dt, tweets, scored_tweets, not_scored_tweets, positive_tweets,
  neutral_tweets, negative_tweets, mean_compound FROM {t("metrics_sentiment_daily")}""",
        "dashboard_engagement_growth": f"""SELECT dt, tweets_observed, tweets_with_previous, engagement,
  previous_engagement, engagement_gain, like_gain, retweet_gain, reply_gain, quote_gain,
  {_share("engagement_gain", "previous_engagement")} AS growth_rate
FROM {t("metrics_engagement_growth")}""",
        "dashboard_tweets": f"""SELECT t.dt, t.tweet_id, t.created_at, t.author_id, u.username, t.lang,
  COALESCE(t.note_text, t.text) AS text, t.like_count, t.retweet_count, t.reply_count, t.quote_count,
  {_engagement("t")} AS engagement,
  ROW_NUMBER() OVER (PARTITION BY t.dt ORDER BY {_engagement("t")} DESC, t.tweet_id) AS engagement_rank,
  COALESCE(s.label, '{NOT_SCORED}') AS sentiment, s.compound,
  '{TWEET_URL_PREFIX}' || CAST(t.tweet_id AS VARCHAR) AS url
FROM {t("tweets")} t
LEFT JOIN {t("users")} u ON u.user_id = t.author_id
LEFT JOIN {t("metrics_tweet_sentiment")} s ON s.tweet_id = t.tweet_id AND s.dt = t.dt""",
    }


def view_statements(schema: str | None) -> list[str]:
    """DROP + CREATE rather than CREATE OR REPLACE: PostgreSQL and Redshift refuse to replace a view
    whose columns changed, and a new version may change them."""
    statements = []
    for name, select in view_selects(schema).items():
        statements.append(f"DROP VIEW IF EXISTS {qualified(name, schema)}")
        statements.append(f"CREATE VIEW {qualified(name, schema)} AS\n{select}")
    return statements
