"""Daily metrics: computed in the warehouse with portable SQL; sentiment with VADER, once per tweet.

A day's metrics come from the warehouse rows whose `dt` is that day, and are stored in the metrics
tables of `tasks/schema.py` (`METRIC_TABLES`). Recomputing a day deletes its rows from every metrics
table and inserts them again in one transaction, so re-runs and backfills leave the same rows and a
failure leaves the previous ones. `dashboard_*` views over those tables are what BI tools read.

The tables count what the tweets carry; `metrics_coverage` (and the per-query counts) record how many
tweets carry each input (public_metrics, author_id, created_at, lang, any field beyond the defaults), and
the views turn a metric whose inputs no tweet carried into NULL: unknown, never a zero. Replies, quotes and
retweets are shares of the tweets whose references are known.

Sentiment is a property of a tweet, and a tweet never changes (an edit is a new id): each English tweet is
scored once and its scores kept in `tweet_sentiment` (`SCORE_TABLES`), keyed by tweet id. An analysis reads
only the day's English tweets without a stored score (an anti-join in SQL), scores those (over several
processes when there are many: `tasks/analytics/sentiment.py`) and inserts them in their own transaction,
before the metrics' one; the day's sentiment metrics join the day's tweets to the stored scores. A re-run
or a backfill of an analyzed day scores nothing.

A day's metrics are recomputed only when their inputs changed. `analysis_inputs` hashes the analysis' own
statements with the version of every table and day in `loaded_days` (which a load raises only when it changed
rows: `tasks.warehouse.base.record_load_statements`); the hash is kept per day in `analyzed_days`, written in the
metrics' transaction. An analysis that finds the same hash there keeps the day's metrics as they are. Any
load counts, not only the day's: a later day's load can move a tweet out of the day (its newer copy wins) or
change an author's followers. Rows written into the tables other than by the pipeline's load are not seen:
run `analyze_day(..., force=True)` after such a change.

The SQL sticks to what DuckDB, PostgreSQL and Redshift all accept: no CTEs inside INSERT, no FILTER
clauses, no `::` casts, integer ratios cast to DOUBLE PRECISION, window functions over subqueries,
timestamps turned to UTC with `AT TIME ZONE 'UTC'` (a session time zone never shifts an hour), string
literals in UNIONs cast to VARCHAR (Redshift would type them CHAR(n)).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import polars as pl

from tasks import run_logger
from tasks.analytics.sentiment import score_texts
from tasks.schema import METRIC_TABLES, SCORE_TABLES, STATE_TABLES, qualified, quote_ident
from tasks.warehouse.base import Warehouse, sql_literal, staging_name

DEFAULT_TOP_N = 20
SENTIMENT = SCORE_TABLES["tweet_sentiment"]
LOADED, ANALYZED = STATE_TABLES["loaded_days"], STATE_TABLES["analyzed_days"]
# VADER's authors' thresholds on the compound score.
POSITIVE_AT, NEGATIVE_AT = 0.05, -0.05
SCORED_LANGS = frozenset({"en"})
NOT_SCORED = "not scored"
UNKNOWN_LANG = "unknown"


class AnalysisError(RuntimeError):
    """A day's analysis failed after its load committed: the data stays, the run ends failed."""


@dataclass
class DayMetrics:
    day: date
    rows: dict[str, int] = field(default_factory=dict)  # metrics table -> rows for the day
    tweets: int = 0
    scored_tweets: int = 0  # the day's tweets with a sentiment score, stored before or now
    scored_new: int = 0  # of those, the ones this analysis scored (0 on a re-run of an analyzed day)
    unchanged_since: datetime | None = None  # set when the inputs were those of this earlier analysis: nothing recomputed

    def describe(self) -> str:
        if self.unchanged_since is None:
            return "recomputed"
        return f"kept: no load changed their inputs since {self.unchanged_since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def day_literal(day: date) -> str:
    return f"DATE '{day.isoformat()}'"


def col(alias: str, name: str) -> str:
    """`alias."name"`: every column is quoted, so a name Redshift reserves (`tag`) stays a column."""
    return f"{alias}.{quote_ident(name)}"


def _engagement(alias: str) -> str:
    return " + ".join(
        f"COALESCE({col(alias, c)}, 0)" for c in ("like_count", "retweet_count", "reply_count", "quote_count")
    )


def _share(part: str, whole: str) -> str:
    return f"CASE WHEN {whole} = 0 THEN NULL ELSE CAST({part} AS DOUBLE PRECISION) / {whole} END"


ENGAGEMENT_COUNTS = ("like_count", "retweet_count", "reply_count", "quote_count")
# Optional tweet fields the pipeline asks for in one `tweet.fields` list with `referenced_tweets` and
# `entities` (tasks/sources/x_api.py REQUEST_FIELDS). A tweet carrying none of them (nor a reference) came
# from a request without `tweet.fields`: whether it is a reply, quote or retweet, or has hashtags, is unknown.
OPTIONAL_TWEET_FIELDS = ("created_at", "author_id", "conversation_id", "lang", *ENGAGEMENT_COUNTS)
RISING_DAYS = 7  # rising topics: the day against the mean of this many days before it


def _counts_known(alias: str) -> str:
    """The tweet carries public_metrics (X sends the four counts together)."""
    return "(" + " OR ".join(f"{col(alias, c)} IS NOT NULL" for c in ENGAGEMENT_COUNTS) + ")"


def _fields_known(alias: str, refs: str) -> str:
    """The tweet carries a field beyond the defaults, or a reference (`refs` is a per-tweet subquery)."""
    present = " OR ".join(f"{col(alias, c)} IS NOT NULL" for c in OPTIONAL_TWEET_FIELDS)
    return f"({present} OR {col(refs, 'tweet_id')} IS NOT NULL)"


def _flag(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def _insert(table: str, schema: str | None, select: str) -> str:
    cols = ", ".join(quote_ident(c) for c in METRIC_TABLES[table].column_names)
    return f"INSERT INTO {qualified(table, schema)} ({cols})\n{select}"


def metric_statements(day: date, schema: str | None, top_n: int = DEFAULT_TOP_N) -> list[str]:
    """INSERT ... SELECT for every metrics table computed in SQL, for `day` (sentiment rows excluded)."""
    d = day_literal(day)
    q = quote_ident

    def t(name: str) -> str:
        return qualified(name, schema)

    def total(expr: str) -> str:
        return f"CAST(COALESCE(SUM({expr}), 0) AS BIGINT)"

    flags = {kind: col("r", f"is_{kind}") for kind in ("reply", "quote", "retweet")}
    ref_flag = "MAX(CASE WHEN {ref} = '{value}' THEN 1 ELSE 0 END) AS {name}"
    refs = f"""SELECT {q("tweet_id")},
    {", ".join(ref_flag.format(ref=q("reference_type"), value=value, name=q(f"is_{kind}"))
               for kind, value in (("reply", "replied_to"), ("quote", "quoted"), ("retweet", "retweeted")))}
  FROM {t("tweet_references")} WHERE {q("dt")} = {d} GROUP BY {q("tweet_id")}"""
    daily = f"""SELECT {d}, COUNT(*), COUNT(DISTINCT {col("t", "author_id")}), {total(_engagement("t"))},
  {total(col("t", "like_count"))}, {total(col("t", "retweet_count"))}, {total(col("t", "reply_count"))},
  {total(col("t", "quote_count"))}, {total(flags["reply"])}, {total(flags["quote"])}, {total(flags["retweet"])},
  {_share(total(flags["reply"]), "COUNT(*)")}, {_share(total(flags["quote"]), "COUNT(*)")},
  {_share(total(flags["retweet"]), "COUNT(*)")}
FROM {t("tweets")} t
LEFT JOIN (
  {refs}
) r ON {col("r", "tweet_id")} = {col("t", "tweet_id")}
WHERE {col("t", "dt")} = {d}"""

    # COUNT(*), not COUNT(DISTINCT tweet_id): `tweet_queries` holds one row per (tweet_id, query) (its key, which
    # the load's merge keeps unique on Redshift too) and `tweets` one per tweet_id, so each group's rows are
    # distinct tweets already. DuckDB ran the two statements with COUNT(DISTINCT) in about twice the time.
    volume_daily = f"""SELECT {d}, {col("v", "query")}, COUNT(*)
FROM {t("tweet_queries")} v WHERE {col("v", "dt")} = {d} GROUP BY {col("v", "query")}"""

    utc = f"{col('t', 'created_at')} AT TIME ZONE 'UTC'"
    created_date, hour = f"CAST({utc} AS DATE)", f"CAST(EXTRACT(HOUR FROM {utc}) AS BIGINT)"
    volume_hourly = f"""SELECT {d}, {col("v", "query")}, {created_date}, {hour}, COUNT(*)
FROM {t("tweet_queries")} v JOIN {t("tweets")} t ON {col("t", "tweet_id")} = {col("v", "tweet_id")}
WHERE {col("v", "dt")} = {d} AND {col("t", "created_at")} IS NOT NULL
GROUP BY {col("v", "query")}, {created_date}, {hour}"""

    entity_sources = {"hashtag": ("tweet_hashtags", "tag"), "mention": ("tweet_mentions", "username"),
                      "domain": ("tweet_urls", "domain")}
    value, occurrences, tweets, rn = q("value"), q("occurrences"), q("tweets"), q("rn")
    entities = "\nUNION ALL\n".join(
        f"""SELECT {d}, CAST('{kind}' AS VARCHAR(16)), {col("e", "value")}, {col("e", "occurrences")},
  {col("e", "tweets")}, {col("e", "rn")} FROM (
  SELECT {col("g", "value")}, {col("g", "occurrences")}, {col("g", "tweets")},
    ROW_NUMBER() OVER (ORDER BY {col("g", "occurrences")} DESC, {col("g", "tweets")} DESC, {col("g", "value")}) AS {rn}
  FROM (
    SELECT LOWER({q(column)}) AS {value}, COUNT(*) AS {occurrences}, COUNT(DISTINCT {q("tweet_id")}) AS {tweets}
    FROM {t(table)} WHERE {q("dt")} = {d} AND {q(column)} IS NOT NULL AND {q(column)} <> ''
    GROUP BY LOWER({q(column)})
  ) g
) e WHERE {col("e", "rn")} <= {int(top_n)}"""
        for kind, (table, column) in entity_sources.items()
    )

    authors = f"""SELECT {d}, {col("a", "author_id")}, {col("u", "username")}, {col("u", "name")}, {col("a", "followers")},
  {col("a", "tweets")}, {col("a", "engagement")}, {col("a", "engagement_rank")}, {col("a", "reach_rank")}
FROM (
  SELECT {col("g", "author_id")}, {col("g", "followers")}, {col("g", "tweets")}, {col("g", "engagement")},
    ROW_NUMBER() OVER (ORDER BY {col("g", "engagement")} DESC, {col("g", "author_id")}) AS {q("engagement_rank")},
    ROW_NUMBER() OVER (ORDER BY COALESCE({col("g", "followers")}, -1) DESC, {col("g", "author_id")})
      AS {q("reach_rank")}
  FROM (
    SELECT {col("t", "author_id")}, MAX({col("u", "followers_count")}) AS {q("followers")}, COUNT(*) AS {tweets},
      {total(_engagement("t"))} AS {q("engagement")}
    FROM {t("tweets")} t LEFT JOIN {t("users")} u ON {col("u", "user_id")} = {col("t", "author_id")}
    WHERE {col("t", "dt")} = {d} AND {col("t", "author_id")} IS NOT NULL GROUP BY {col("t", "author_id")}
  ) g
) a LEFT JOIN {t("users")} u ON {col("u", "user_id")} = {col("a", "author_id")}
WHERE {col("a", "engagement_rank")} <= {int(top_n)} OR {col("a", "reach_rank")} <= {int(top_n)}"""

    lang = f"COALESCE(NULLIF({q('lang')}, ''), '{UNKNOWN_LANG}')"
    languages = f"""SELECT {d}, {col("l", "lang")}, {col("l", "tweets")},
  CAST({col("l", "tweets")} AS DOUBLE PRECISION) / {col("n", "total")}
FROM (SELECT {lang} AS {q("lang")}, COUNT(*) AS {tweets} FROM {t("tweets")} WHERE {q("dt")} = {d} GROUP BY {lang}) l
CROSS JOIN (SELECT COUNT(*) AS {q("total")} FROM {t("tweets")} WHERE {q("dt")} = {d}) n"""

    counts = ("like_count", "retweet_count", "reply_count", "quote_count")
    m_cols = ", ".join(col("m", c) for c in counts)
    gains = ", ".join(
        total(f"CASE WHEN {col('p', 'tweet_id')} IS NOT NULL THEN COALESCE({col('c', c)}, 0) - COALESCE({col('p', c)}, 0) END")
        for c in counts
    )
    growth = f"""SELECT {d}, COUNT(*), COUNT({col("p", "tweet_id")}), {total(col("c", "engagement"))},
  {total(col("p", "engagement"))},
  {total(f'CASE WHEN {col("p", "tweet_id")} IS NOT NULL THEN {col("c", "engagement")} - {col("p", "engagement")} END')},
  {gains}
FROM (
  SELECT {col("m", "tweet_id")}, {m_cols}, {_engagement("m")} AS {q("engagement")}
  FROM {t("tweet_metrics_daily")} m WHERE {col("m", "metric_date")} = {d}
) c
LEFT JOIN (
  SELECT {col("m", "tweet_id")}, {m_cols}, {_engagement("m")} AS {q("engagement")},
    ROW_NUMBER() OVER (PARTITION BY {col("m", "tweet_id")} ORDER BY {col("m", "metric_date")} DESC) AS {rn}
  FROM {t("tweet_metrics_daily")} m
  WHERE {col("m", "metric_date")} < {d}
    AND {col("m", "tweet_id")} IN (SELECT {q("tweet_id")} FROM {t("tweet_metrics_daily")} WHERE {q("metric_date")} = {d})
) p ON {col("p", "tweet_id")} = {col("c", "tweet_id")} AND {col("p", "rn")} = 1"""

    lang_known = f"{col('t', 'lang')} IS NOT NULL AND {col('t', 'lang')} <> ''"
    coverage = f"""SELECT {d}, COUNT(*), {total(_flag(_fields_known("t", "r")))}, {total(_flag(_counts_known("t")))},
  COUNT({col("t", "author_id")}), COUNT({col("t", "created_at")}), {total(_flag(lang_known))}
FROM {t("tweets")} t LEFT JOIN ({refs}) r ON {col("r", "tweet_id")} = {col("t", "tweet_id")}
WHERE {col("t", "dt")} = {d}"""

    query_daily = f"""SELECT {d}, {col("v", "query")}, COUNT(*), COUNT(DISTINCT {col("t", "author_id")}),
  {total(_engagement("t"))}, {total(_flag(_fields_known("t", "r")))}, {total(_flag(_counts_known("t")))},
  COUNT({col("t", "author_id")}), {total(flags["reply"])}, {total(flags["quote"])}, {total(flags["retweet"])}
FROM {t("tweet_queries")} v JOIN {t("tweets")} t ON {col("t", "tweet_id")} = {col("v", "tweet_id")}
LEFT JOIN ({refs}) r ON {col("r", "tweet_id")} = {col("t", "tweet_id")}
WHERE {col("v", "dt")} = {d} GROUP BY {col("v", "query")}"""

    query_entities = "\nUNION ALL\n".join(
        f"""SELECT {d}, {col("e", "query")}, CAST('{kind}' AS VARCHAR(16)), {col("e", "value")}, {col("e", "occurrences")},
  {col("e", "tweets")}, {col("e", "rn")} FROM (
  SELECT {col("g", "query")}, {col("g", "value")}, {col("g", "occurrences")}, {col("g", "tweets")},
    ROW_NUMBER() OVER (PARTITION BY {col("g", "query")}
      ORDER BY {col("g", "occurrences")} DESC, {col("g", "tweets")} DESC, {col("g", "value")}) AS {rn}
  FROM (
    SELECT {col("v", "query")}, LOWER({col("x", column)}) AS {value}, COUNT(*) AS {occurrences},
      COUNT(DISTINCT {col("x", "tweet_id")}) AS {tweets}
    FROM {t(table)} x JOIN {t("tweet_queries")} v ON {col("v", "tweet_id")} = {col("x", "tweet_id")}
      AND {col("v", "dt")} = {d}
    WHERE {col("x", "dt")} = {d} AND {col("x", column)} IS NOT NULL AND {col("x", column)} <> ''
    GROUP BY {col("v", "query")}, LOWER({col("x", column)})
  ) g
) e WHERE {col("e", "rn")} <= {int(top_n)}"""
        for kind, (table, column) in entity_sources.items()
    )

    since = day_literal(day - timedelta(days=RISING_DAYS))
    counted = "\nUNION ALL\n".join(
        f"""  SELECT CAST('{kind}' AS VARCHAR(16)) AS {q("kind")}, LOWER({q(column)}) AS {value},
    {total(_flag(f"{q('dt')} = {d}"))} AS {occurrences}, {total(_flag(f"{q('dt')} < {d}"))} AS {q("previous")}
  FROM {t(table)} WHERE {q("dt")} >= {since} AND {q("dt")} <= {d} AND {q(column)} IS NOT NULL AND {q(column)} <> ''
  GROUP BY LOWER({q(column)})"""
        for kind, (table, column) in entity_sources.items()
    )
    days, previous = col("n", "days"), col("k", "previous")
    mean = f"CAST({previous} AS DOUBLE PRECISION) / {days}"
    change = f"CASE WHEN {days} = 0 THEN NULL ELSE {col('k', 'occurrences')} - {mean} END"
    has_fields = " OR ".join(f"{q(c)} IS NOT NULL" for c in OPTIONAL_TWEET_FIELDS)
    rising = f"""SELECT {d}, {_cols("kind value occurrences previous days previous_mean change rn", "x")} FROM (
  SELECT {col("k", "kind")}, {col("k", "value")}, {col("k", "occurrences")}, {previous}, {days},
    CASE WHEN {days} = 0 THEN NULL ELSE {mean} END AS {q("previous_mean")}, {change} AS {q("change")},
    ROW_NUMBER() OVER (PARTITION BY {col("k", "kind")}
      ORDER BY COALESCE({change}, {col("k", "occurrences")}) DESC, {col("k", "occurrences")} DESC, {col("k", "value")})
      AS {rn}
  FROM (
{counted}
  ) k
  CROSS JOIN (
    SELECT COUNT(DISTINCT {q("dt")}) AS {q("days")} FROM {t("tweets")}
    WHERE {q("dt")} >= {since} AND {q("dt")} < {d} AND ({has_fields})
  ) n
  WHERE {col("k", "occurrences")} > 0
) x WHERE {col("x", "rn")} <= {int(top_n)}"""

    return [
        _insert("metrics_daily", schema, daily),
        _insert("metrics_coverage", schema, coverage),
        _insert("metrics_query_daily", schema, query_daily),
        _insert("metrics_query_entities", schema, query_entities),
        _insert("metrics_rising_entities", schema, rising),
        _insert("metrics_volume_daily", schema, volume_daily),
        _insert("metrics_volume_hourly", schema, volume_hourly),
        _insert("metrics_top_entities", schema, entities),
        _insert("metrics_top_authors", schema, authors),
        _insert("metrics_languages", schema, languages),
        _insert("metrics_engagement_growth", schema, growth),
    ]


def sentiment_daily_statement(day: date, schema: str | None) -> str:
    """The day's sentiment counts: its tweets joined to their stored scores (no score: not scored)."""
    d = day_literal(day)
    s = col("s", "tweet_id")

    def count_if(cond: str) -> str:
        return f"CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT)"

    select = f"""SELECT {d}, COUNT(*), COUNT({s}), COUNT(*) - COUNT({s}),
  {count_if(f"{col('s', 'label')} = 'positive'")}, {count_if(f"{col('s', 'label')} = 'neutral'")},
  {count_if(f"{col('s', 'label')} = 'negative'")}, AVG({col("s", "compound")})
FROM {qualified("tweets", schema)} t
LEFT JOIN {qualified(SENTIMENT.name, schema)} s ON {s} = {col("t", "tweet_id")}
WHERE {col("t", "dt")} = {d}"""
    return _insert("metrics_sentiment_daily", schema, select)


def score_sentiment(tweets: pl.DataFrame, workers: int | None = None) -> pl.DataFrame:
    """VADER scores for English tweets (`tweet_id`, `lang`, `text`), in input order; other languages are
    "not scored".

    VADER's lexicon is English: a score for another language would be a guess, so it is left null. Scores
    are `vaderSentiment`'s own (`tasks.analytics.sentiment`), computed on `workers` processes when there are
    many (default: the cores available), in the same order whatever their number.
    """
    scored = pl.col("lang").is_in(list(SCORED_LANGS)).fill_null(False) & pl.col("text").is_not_null()
    frame = tweets.select("tweet_id", scored.alias("scored"), "text").with_row_index("_row")
    scorable = frame.filter(pl.col("scored"))
    scores = score_texts(scorable["text"].to_list(), workers)
    values = pl.DataFrame(scores, schema=dict.fromkeys(("negative", "neutral", "positive", "compound"), pl.Float64),
                          orient="row")
    frame = frame.join(pl.concat([scorable.select("_row"), values], how="horizontal"), on="_row", how="left")
    label = (
        pl.when(~pl.col("scored")).then(pl.lit(NOT_SCORED))
        .when(pl.col("compound") >= POSITIVE_AT).then(pl.lit("positive"))
        .when(pl.col("compound") <= NEGATIVE_AT).then(pl.lit("negative"))
        .otherwise(pl.lit("neutral"))
    )
    return frame.sort("_row").select(
        "tweet_id", "scored", label.alias("label"), "compound", "positive", "neutral", "negative",
    )


def store_sentiment_statement(schema: str | None) -> str:
    """Staged scores into `tweet_sentiment`, leaving out ids that have a row by now (a run of another day
    that holds the same tweet id may have stored it meanwhile): a tweet keeps its first score."""
    table = qualified(SENTIMENT.name, schema)
    cols = ", ".join(quote_ident(c) for c in SENTIMENT.column_names)
    stg = quote_ident(staging_name(SENTIMENT))
    return (f"INSERT INTO {table} ({cols})\nSELECT {', '.join(col('n', c) for c in SENTIMENT.column_names)} "
            f"FROM {stg} n\nWHERE NOT EXISTS (SELECT 1 FROM {table} s WHERE {col('s', 'tweet_id')} = "
            f"{col('n', 'tweet_id')})")


def ensure_metric_objects(warehouse: Warehouse) -> None:
    """Create missing metrics, score and state tables and (re)create the dashboard views, in one transaction."""
    tables = [warehouse.design(t).create_sql(warehouse.dialect, warehouse.schema)
              for t in (*METRIC_TABLES.values(), *SCORE_TABLES.values(), *STATE_TABLES.values())]
    warehouse.execute_script(tables + view_statements(warehouse.schema))


def read_unscored_texts(warehouse: Warehouse, day: date) -> pl.DataFrame:
    """The day's tweets VADER would score that have no stored score, as VADER reads them: the full text of
    long posts, else `text`."""
    text = f"COALESCE({col('t', 'note_text')}, {col('t', 'text')})"
    langs = ", ".join(f"'{lang}'" for lang in sorted(SCORED_LANGS))
    rows = warehouse.query(
        f"SELECT {col('t', 'tweet_id')}, {col('t', 'lang')}, {text} FROM {qualified('tweets', warehouse.schema)} t "
        f"WHERE {col('t', 'dt')} = {day_literal(day)} AND {col('t', 'lang')} IN ({langs}) AND {text} IS NOT NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {qualified(SENTIMENT.name, warehouse.schema)} s "
        f"WHERE {col('s', 'tweet_id')} = {col('t', 'tweet_id')}) ORDER BY {col('t', 'tweet_id')}"
    )
    return pl.DataFrame(rows, schema={"tweet_id": pl.Int64, "lang": pl.String, "text": pl.String}, orient="row")


def store_new_sentiment(warehouse: Warehouse, day: date, workers: int | None = None) -> int:
    """Score the day's English tweets that have no stored score and store them, in one transaction of their
    own; returns how many were scored. The scores are facts about tweets, not about the day: they stay
    when the day's metrics transaction fails, and the next run finds them."""
    scored = score_sentiment(read_unscored_texts(warehouse, day), workers).filter(pl.col("scored"))
    if scored.is_empty():
        return 0
    rows = SENTIMENT.conform(scored.with_columns(pl.lit(day, dtype=pl.Date).alias("scored_dt")))
    warehouse.stage_and_run(SENTIMENT, rows.to_arrow(), [store_sentiment_statement(warehouse.schema)])
    return scored.height


def analysis_inputs(warehouse: Warehouse, day: date, top_n: int) -> str:
    """SHA-256 of what the day's metrics are computed from: the analysis' statements (its code, the day and
    `top_n`) and the version of every table and day loaded, with when it last changed (module docstring)."""
    schema = warehouse.schema
    digest = hashlib.sha256()
    for sql in (*metric_statements(day, schema, top_n), sentiment_daily_statement(day, schema),
                *view_statements(schema)):
        digest.update(sql.encode())
    # `changed_at` and `content` besides `version`: a `loaded_days` dropped and filled again restarts versions at 1.
    for row in warehouse.query(f"SELECT {_cols('table_name dt version changed_at content')} "
                               f"FROM {qualified(LOADED.name, schema)} ORDER BY {_cols('table_name dt')}"):
        digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def record_analysis_statements(day: date, inputs: str, schema: str | None) -> list[str]:
    """Replace the day's row of `analyzed_days`, with the rows the day now has over every metrics table (run
    last in the metrics' transaction)."""
    target = qualified(ANALYZED.name, schema)
    d = day_literal(day)
    analyzed_at = sql_literal(datetime.now(UTC), ANALYZED.column("analyzed_at"))
    counts = "\n  UNION ALL\n".join(f'  SELECT COUNT(*) AS "n" FROM {qualified(name, schema)} WHERE "dt" = {d}'
                                    for name in METRIC_TABLES)
    insert = (f"INSERT INTO {target} ({_cols(' '.join(ANALYZED.column_names))})\n"
              f"SELECT {d}, '{inputs}', {analyzed_at}, CAST(SUM({col('c', 'n')}) AS BIGINT) FROM (\n{counts}\n) c")
    return [f'DELETE FROM {target} WHERE "dt" = {d}', insert]


@dataclass(frozen=True)
class Analyzed:
    at: datetime
    metric_rows: int


def analyzed_with(warehouse: Warehouse, day: date, inputs: str) -> Analyzed | None:
    """When the day's metrics were computed from `inputs`, and how many rows they had, if they were."""
    rows = warehouse.query(f'SELECT "analyzed_at", "metric_rows" FROM {qualified(ANALYZED.name, warehouse.schema)} '
                           f"WHERE \"dt\" = {day_literal(day)} AND \"inputs\" = '{inputs}'")
    return Analyzed(*rows[0]) if rows else None


def metric_rows(warehouse: Warehouse, day: date) -> dict[str, int]:
    """The day's rows in each metrics table."""
    return {name: warehouse.query(f'SELECT COUNT(*) FROM {qualified(name, warehouse.schema)} '
                                  f'WHERE "dt" = {day_literal(day)}')[0][0]
            for name in METRIC_TABLES}


def analyze_day(warehouse: Warehouse, day: date, top_n: int = DEFAULT_TOP_N, workers: int | None = None,
                force: bool = False) -> DayMetrics:
    """Score the day's tweets not scored yet, then recompute every metrics table's rows for `day` (delete and
    insert in one transaction), unless they were computed from the same inputs and are all still there
    (module docstring), and not `force`. `workers`: processes for scoring (default: the cores available)."""
    ensure_metric_objects(warehouse)
    schema, logger = warehouse.schema, run_logger(__name__)
    # Read before anything is computed: a load that commits meanwhile makes the next analysis recompute.
    inputs = analysis_inputs(warehouse, day, top_n)
    previous = None if force else analyzed_with(warehouse, day, inputs)
    rows = metric_rows(warehouse, day) if previous else {}
    if previous and sum(rows.values()) != previous.metric_rows:
        logger.warning("metrics of %s: %d rows where the analysis of %s left %d (removed since?): computing them again",
                       day, sum(rows.values()), previous.at, previous.metric_rows)
        previous = None
    if previous is None:
        scored_new = store_new_sentiment(warehouse, day, workers)
        deletes = [f'DELETE FROM {qualified(name, schema)} WHERE "dt" = {day_literal(day)}' for name in METRIC_TABLES]
        warehouse.execute_script(deletes + metric_statements(day, schema, top_n)
                                 + [sentiment_daily_statement(day, schema)]
                                 + record_analysis_statements(day, inputs, schema))
        rows = metric_rows(warehouse, day)
    else:
        scored_new = 0
    [(tweets, scored)] = warehouse.query(
        f'SELECT "tweets", "scored_tweets" FROM {qualified("metrics_sentiment_daily", schema)} '
        f'WHERE "dt" = {day_literal(day)}'
    )
    metrics = DayMetrics(day, rows, tweets=tweets, scored_tweets=scored, scored_new=scored_new,
                         unchanged_since=previous.at if previous else None)
    logger.info("metrics of %s %s; sentiment: %d of %d tweets scored, %d of them by this run (the rest were stored)",
                day, metrics.describe(), scored, tweets, scored_new)
    return metrics


# --- BI views --------------------------------------------------------------------------------------

TWEET_URL_PREFIX = "https://x.com/i/web/status/"
PROFILE_URL_PREFIX = "https://x.com/"


def _cols(names: str, alias: str | None = None) -> str:
    """A select list of quoted columns from space-separated `names`, each prefixed with `alias`."""
    return ", ".join(col(alias, n) if alias else quote_ident(n) for n in names.split())


def view_selects(schema: str | None) -> dict[str, str]:
    """`dashboard_*` views: stable, documented columns for BI tools, one row grain each."""
    q = quote_ident

    def t(name: str) -> str:
        return qualified(name, schema)

    def entity(kind: str, column: str) -> str:
        return (f'SELECT "dt", "value" AS {q(column)}, "occurrences", "tweets", "rank" '
                f"FROM {t('metrics_top_entities')} WHERE \"kind\" = '{kind}'")

    def select(names: str, table: str) -> str:
        return f"SELECT {_cols(names)} FROM {t(table)}"

    def known(alias: str, coverage: str, names: str, counted: str = "c") -> str:
        """Each column of `alias`, NULL (unknown) when there were tweets but none carried the column's inputs
        (`counted`.`coverage` is 0): an unknown is not a zero."""
        return ", ".join(
            f"CASE WHEN {col(counted, coverage)} = 0 AND {col(alias, 'tweets')} > 0 THEN NULL ELSE {col(alias, n)} END "
            f"AS {q(n)}" for n in names.split())

    def shares(alias: str) -> str:
        """Reply, quote and retweet shares of the tweets whose references are known (`tweets_with_fields`)."""
        return ", ".join(
            f"{_share(col(alias, f'{kind}_tweets'), col(alias, 'tweets_with_fields'))} AS {q(f'{kind}_share')}"
            for kind in ("reply", "quote", "retweet"))

    coverage_columns = "tweets_with_fields tweets_with_counts tweets_with_author tweets_with_created_at tweets_with_lang"
    daily = ", ".join([
        _cols("dt tweets", "m"), known("m", "tweets_with_author", "authors"),
        known("m", "tweets_with_counts", "engagement like_count retweet_count reply_count quote_count"),
        known("m", "tweets_with_fields", "reply_tweets quote_tweets retweet_tweets"),
        # Days analyzed before coverage was recorded keep their shares of all tweets.
        ", ".join(f"CASE WHEN {col('c', 'dt')} IS NULL THEN {col('m', f'{kind}_share')} "
                  f"ELSE {_share(col('m', f'{kind}_tweets'), col('c', 'tweets_with_fields'))} END AS {q(f'{kind}_share')}"
                  for kind in ("reply", "quote", "retweet")),
    ])
    sentiment = _cols("scored_tweets not_scored_tweets positive_tweets neutral_tweets negative_tweets "
                      "mean_compound", "s")
    return {
        "dashboard_daily": f"""SELECT {daily},
  {sentiment},
  {_share(col("s", "positive_tweets"), col("s", "scored_tweets"))} AS "positive_share",
  {_share(col("s", "negative_tweets"), col("s", "scored_tweets"))} AS "negative_share",
  {_cols(coverage_columns, "c")}
FROM {t("metrics_daily")} m LEFT JOIN {t("metrics_sentiment_daily")} s ON {col("s", "dt")} = {col("m", "dt")}
LEFT JOIN {t("metrics_coverage")} c ON {col("c", "dt")} = {col("m", "dt")}""",
        "dashboard_query_daily": f"""SELECT {_cols("dt query tweets", "m")},
  {known("m", "tweets_with_author", "authors", "m")}, {known("m", "tweets_with_counts", "engagement", "m")},
  {known("m", "tweets_with_fields", "reply_tweets quote_tweets retweet_tweets", "m")}, {shares("m")},
  {_cols("tweets_with_fields tweets_with_counts tweets_with_author", "m")}
FROM {t("metrics_query_daily")} m""",
        "dashboard_volume_daily": select("dt query tweets", "metrics_volume_daily"),
        "dashboard_volume_hourly": select("dt query created_date hour tweets", "metrics_volume_hourly"),
        "dashboard_top_hashtags": entity("hashtag", "hashtag"),
        "dashboard_top_mentions": entity("mention", "username"),
        "dashboard_top_domains": entity("domain", "domain"),
        "dashboard_top_authors": f"""SELECT {_cols("dt author_id username name followers_count tweets", "a")},
  CASE WHEN {col("c", "tweets_with_counts")} = 0 THEN NULL ELSE {col("a", "engagement")} END AS "engagement",
  {_cols("engagement_rank reach_rank", "a")}, '{PROFILE_URL_PREFIX}' || {col("a", "username")} AS "profile_url"
FROM {t("metrics_top_authors")} a LEFT JOIN {t("metrics_coverage")} c ON {col("c", "dt")} = {col("a", "dt")}""",
        "dashboard_query_top_entities": select("dt query kind value occurrences tweets rank", "metrics_query_entities"),
        "dashboard_rising_topics": select("dt kind value occurrences previous_occurrences previous_days previous_mean "
                                          "change rank", "metrics_rising_entities"),
        "dashboard_languages": f"""SELECT {_cols("dt lang tweets share")},
  CASE WHEN "lang" = '{UNKNOWN_LANG}' THEN TRUE ELSE FALSE END AS "lang_missing"
FROM {t("metrics_languages")}""",
        "dashboard_sentiment_daily": select("dt tweets scored_tweets not_scored_tweets positive_tweets "
                                            "neutral_tweets negative_tweets mean_compound", "metrics_sentiment_daily"),
        "dashboard_engagement_growth": f"""SELECT {_cols("dt tweets_observed tweets_with_previous engagement "
                                                         "previous_engagement engagement_gain like_gain "
                                                         "retweet_gain reply_gain quote_gain")},
  {_share(q("engagement_gain"), q("previous_engagement"))} AS "growth_rate"
FROM {t("metrics_engagement_growth")}""",
        # The rank is computed over the narrow columns alone and joined back: a filter on it and on `dt` (the
        # dashboard's top 10 of a day) then reaches the text, users and scores of those rows only. 300,000
        # tweets: 78 ms instead of 209 on DuckDB (median of 7), same rows.
        "dashboard_tweets": f"""SELECT {col("r", "dt")}, {_cols("tweet_id created_at author_id", "t")}, {col("u", "username")},
  {col("t", "lang")}, COALESCE({col("t", "note_text")}, {col("t", "text")}) AS "text",
  {_cols("like_count retweet_count reply_count quote_count", "t")},
  CASE WHEN {_counts_known("t")} THEN {_engagement("t")} END AS "engagement",
  {col("r", "engagement_rank")},
  COALESCE({col("s", "label")}, '{NOT_SCORED}') AS "sentiment", {col("s", "compound")},
  '{TWEET_URL_PREFIX}' || CAST({col("t", "tweet_id")} AS VARCHAR) AS "url"
FROM (
  SELECT {col("e", "dt")}, {col("e", "tweet_id")},
    ROW_NUMBER() OVER (PARTITION BY {col("e", "dt")} ORDER BY {_engagement("e")} DESC, {col("e", "tweet_id")})
      AS "engagement_rank"
  FROM {t("tweets")} e
) r
JOIN {t("tweets")} t ON {col("t", "tweet_id")} = {col("r", "tweet_id")}
LEFT JOIN {t("users")} u ON {col("u", "user_id")} = {col("t", "author_id")}
LEFT JOIN {t(SENTIMENT.name)} s ON {col("s", "tweet_id")} = {col("t", "tweet_id")}""",
    }


def view_statements(schema: str | None) -> list[str]:
    """DROP + CREATE rather than CREATE OR REPLACE: PostgreSQL and Redshift refuse to replace a view
    whose columns changed, and a new version may change them."""
    statements = []
    for name, select in view_selects(schema).items():
        statements.append(f"DROP VIEW IF EXISTS {qualified(name, schema)}")
        statements.append(f"CREATE VIEW {qualified(name, schema)} AS\n{select}")
    return statements
