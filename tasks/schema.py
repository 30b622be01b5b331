"""The one place that defines every table: columns, types, keys.

Polars dtypes, the Arrow/Parquet schema, the CSV header order and the warehouse DDL for DuckDB,
PostgreSQL and Redshift are all derived from the definitions below, so a column is added here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl
import pyarrow as pa

Kind = Literal["int64", "string", "bool", "timestamp", "date", "float64"]
Dialect = Literal["duckdb", "postgresql", "redshift"]

# Curated Parquet's codec: snappy, Parquet's usual one, which Redshift COPY reads. zstd made the files about
# 40% smaller but cost about a quarter more CPU to write, and curated Parquet is a load format, not an archive.
PARQUET_COMPRESSION = "snappy"
# Redshift VARCHAR lengths count bytes, and one character may take 4 (emoji, supplementary CJK).
BYTES_PER_CHAR = 4
REDSHIFT_VARCHAR_MAX = 65535


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = True
    max_chars: int | None = None  # strings only: longest value in characters the source allows
    description: str = ""
    # Few distinct values per day (languages, tags, queries, fetch times): Parquet dictionary-encodes them
    # and the CSV writer formats each distinct timestamp once. Dates and booleans always count as
    # repetitive; free text and ids are not (hashing them would cost CPU for nothing).
    repetitive: bool = False

    @property
    def few_values(self) -> bool:
        """Repetitive, or a date or boolean (few distinct values by nature)."""
        return self.repetitive or self.kind in ("date", "bool")

    @property
    def parquet_dictionary(self) -> bool:
        return self.few_values

    @property
    def parquet_statistics(self) -> bool:
        """Min/max are kept for what a reader filters on (ids, numbers, times, repetitive strings); for
        free text they prune nothing and cost a quarter of a tweets part's Parquet encoding."""
        return self.kind != "string" or self.repetitive

    @property
    def polars_dtype(self) -> pl.DataType:
        return _POLARS[self.kind]

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW[self.kind]

    @property
    def max_bytes(self) -> int | None:
        """Strings: the most UTF-8 bytes a value holds, in every format and warehouse. Redshift's VARCHAR(n)
        counts bytes (at most 65535), so the budget is 4 bytes per allowed character, capped there: a longer
        value is cut at a UTF-8 boundary at normalize (`tasks.lake.normalize.clean_strings`, counted), and the
        raw page keeps it whole. Only `tweets.note_text` (25,000 characters) can reach the cap."""
        if self.kind != "string":
            return None
        return min((self.max_chars or 256) * BYTES_PER_CHAR, REDSHIFT_VARCHAR_MAX)

    def sql_type(self, dialect: Dialect) -> str:
        if self.kind == "string":
            return f"VARCHAR({self.max_bytes})" if dialect == "redshift" else "VARCHAR"
        return _SQL[self.kind]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    description: str = ""
    # Redshift physical design: rows of one tweet live on one slice; range scans by time are cheap.
    distkey: str | None = None
    sortkey: tuple[str, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def partition_column(self) -> str:
        """Integer key column that spreads a day's rows over part files (same key, same part)."""
        return self.primary_key[0]

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.polars_dtype for c in self.columns})

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns])

    def empty_frame(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema)

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Cast and order `frame` to this table's schema (missing optional columns become null)."""
        exprs = []
        for col in self.columns:
            if col.name in frame.columns:
                exprs.append(pl.col(col.name).cast(col.polars_dtype))
            else:
                exprs.append(pl.lit(None, dtype=col.polars_dtype).alias(col.name))
        return frame.select(exprs)

    def create_sql(self, dialect: Dialect, schema: str | None = None, name: str | None = None) -> str:
        target = qualified(name or self.name, schema)
        cols = [
            f"    {quote_ident(c.name)} {c.sql_type(dialect)}{'' if c.nullable else ' NOT NULL'}"
            for c in self.columns
        ]
        cols.append(f"    PRIMARY KEY ({', '.join(quote_ident(k) for k in self.primary_key)})")
        sql = f"CREATE TABLE IF NOT EXISTS {target} (\n" + ",\n".join(cols) + "\n)"
        if dialect == "redshift":
            if self.distkey:
                sql += f"\nDISTSTYLE KEY DISTKEY ({quote_ident(self.distkey)})"
            if self.sortkey:
                sql += f"\nCOMPOUND SORTKEY ({', '.join(quote_ident(k) for k in self.sortkey)})"
        return sql


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(name: str, schema: str | None) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}" if schema else quote_ident(name)


_POLARS: dict[str, pl.DataType] = {
    "int64": pl.Int64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "timestamp": pl.Datetime("us", "UTC"),
    "date": pl.Date(),
    "float64": pl.Float64(),
}
_ARROW: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "float64": pa.float64(),
}
_SQL: dict[str, str] = {
    "int64": "BIGINT",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
    "float64": "DOUBLE PRECISION",
}


def _c(
    name: str, kind: Kind, nullable: bool = True, max_chars: int | None = None, doc: str = "", repetitive: bool = False
) -> Column:
    return Column(name, kind, nullable, max_chars, doc, repetitive)


_DT = _c("dt", "date", False, doc="UTC day whose run delivered the row (curated partition)")
_COUNTS = (
    _c("retweet_count", "int64"),
    _c("reply_count", "int64"),
    _c("like_count", "int64"),
    _c("quote_count", "int64"),
    _c("bookmark_count", "int64"),
    _c("impression_count", "int64"),
)
_SPAN = (_c("start_pos", "int64", False), _c("end_pos", "int64"))

TWEETS = Table(
    "tweets",
    (
        _c("tweet_id", "int64", False),
        _c("author_id", "int64"),
        _c("conversation_id", "int64"),
        _c("created_at", "timestamp"),
        _c("lang", "string", max_chars=16, repetitive=True),
        # `text` is at most 280 weighted characters, but t.co links and entities can make it longer.
        _c("text", "string", max_chars=1000),
        _c("note_text", "string", max_chars=25000, doc="full text of a long post (note_tweet)"),
        _c("in_reply_to_user_id", "int64"),
        _c("possibly_sensitive", "bool"),
        *_COUNTS,
        _c("edit_history_tweet_ids", "string", max_chars=1000, doc="comma-separated ids, oldest first"),
        _c("fetched_at", "timestamp", False, repetitive=True),
        _DT,
    ),
    primary_key=("tweet_id",),
    distkey="tweet_id",
    sortkey=("created_at",),
)

USERS = Table(
    "users",
    (
        _c("user_id", "int64", False),
        _c("username", "string", max_chars=64),
        _c("name", "string", max_chars=100),
        _c("description", "string", max_chars=320),
        _c("location", "string", max_chars=100, repetitive=True),
        _c("created_at", "timestamp"),
        _c("verified", "bool"),
        _c("followers_count", "int64"),
        _c("following_count", "int64"),
        _c("tweet_count", "int64"),
        _c("listed_count", "int64"),
        _c("profile_image_url", "string", max_chars=1024),
        _c("fetched_at", "timestamp", False, repetitive=True),
        _DT,
    ),
    primary_key=("user_id",),
    distkey="user_id",
    sortkey=("user_id",),
)

TWEET_QUERIES = Table(
    "tweet_queries",
    (
        _c("tweet_id", "int64", False),
        _c("query", "string", False, max_chars=1024, doc="search query or timeline that matched", repetitive=True),
        _c("source", "string", False, max_chars=32, repetitive=True),
        _c("fetched_at", "timestamp", False, repetitive=True),
        _DT,
    ),
    primary_key=("tweet_id", "query"),
    distkey="tweet_id",
    sortkey=("dt",),
)

TWEET_HASHTAGS = Table(
    "tweet_hashtags",
    (_c("tweet_id", "int64", False), *_SPAN, _c("tag", "string", max_chars=280, repetitive=True), _DT),
    primary_key=("tweet_id", "start_pos"),
    distkey="tweet_id",
    sortkey=("dt",),
)

TWEET_CASHTAGS = Table(
    "tweet_cashtags",
    (_c("tweet_id", "int64", False), *_SPAN, _c("tag", "string", max_chars=280, repetitive=True), _DT),
    primary_key=("tweet_id", "start_pos"),
    distkey="tweet_id",
    sortkey=("dt",),
)

TWEET_MENTIONS = Table(
    "tweet_mentions",
    (
        _c("tweet_id", "int64", False),
        *_SPAN,
        _c("username", "string", max_chars=64, repetitive=True),
        _c("user_id", "int64"),
        _DT,
    ),
    primary_key=("tweet_id", "start_pos"),
    distkey="tweet_id",
    sortkey=("dt",),
)

TWEET_URLS = Table(
    "tweet_urls",
    (
        _c("tweet_id", "int64", False),
        *_SPAN,
        _c("url", "string", max_chars=1024),
        _c("expanded_url", "string", max_chars=4096),
        _c("display_url", "string", max_chars=1024),
        _c("domain", "string", max_chars=255, repetitive=True),
        _DT,
    ),
    primary_key=("tweet_id", "start_pos"),
    distkey="tweet_id",
    sortkey=("dt",),
)

TWEET_REFERENCES = Table(
    "tweet_references",
    (
        _c("tweet_id", "int64", False),
        _c("reference_type", "string", False, max_chars=16, doc="replied_to, quoted or retweeted", repetitive=True),
        _c("referenced_tweet_id", "int64", False),
        _DT,
    ),
    primary_key=("tweet_id", "reference_type", "referenced_tweet_id"),
    distkey="tweet_id",
    sortkey=("dt",),
)

TWEET_METRICS_DAILY = Table(
    "tweet_metrics_daily",
    (
        _c("tweet_id", "int64", False),
        _c("metric_date", "date", False, doc="UTC day the counts were observed"),
        *_COUNTS,
        _c("observed_at", "timestamp", False, repetitive=True),
        _DT,
    ),
    primary_key=("tweet_id", "metric_date"),
    distkey="tweet_id",
    sortkey=("metric_date",),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        TWEETS,
        USERS,
        TWEET_QUERIES,
        TWEET_HASHTAGS,
        TWEET_CASHTAGS,
        TWEET_MENTIONS,
        TWEET_URLS,
        TWEET_REFERENCES,
        TWEET_METRICS_DAILY,
    )
}

# Daily metrics derived in the warehouse from the tables above (tasks/analytics/analyze.py recomputes a day's
# rows). Each row belongs to the analyzed day `dt`; they are not curated files and not in TABLES.
_DAY = _c("dt", "date", False, doc="analyzed UTC day: the metrics come from rows with this dt")


def _metric(name: str, columns: tuple[Column, ...], key: tuple[str, ...], doc: str) -> Table:
    return Table(name, (_DAY, *columns), ("dt", *key), doc, sortkey=("dt",))


# The entity of the entity metrics tables: its kind and its value.
_ENTITY = (
    _c("kind", "string", False, max_chars=16, doc="hashtag, mention or domain"),
    _c("value", "string", False, max_chars=280, doc="lower-cased tag, username or domain"),
)


def _share(name: str) -> Column:
    return _c(name, "float64", doc="fraction of the day's tweets, 0..1; null when there are none")


METRICS_DAILY = _metric(
    "metrics_daily",
    (
        _c("tweets", "int64", False),
        _c("authors", "int64", False),
        _c("engagement", "int64", False, doc="likes + retweets + replies + quotes"),
        _c("like_count", "int64", False),
        _c("retweet_count", "int64", False),
        _c("reply_count", "int64", False),
        _c("quote_count", "int64", False),
        _c("reply_tweets", "int64", False),
        _c("quote_tweets", "int64", False),
        _c("retweet_tweets", "int64", False),
        _share("reply_share"),
        _share("quote_share"),
        _share("retweet_share"),
    ),
    (),
    "headline numbers of a day; a day with no tweets has a row of zeros",
)
def _known(name: str, what: str) -> Column:
    return _c(name, "int64", False, doc=f"tweets of the day that carry {what}")


METRICS_COVERAGE = _metric(
    "metrics_coverage",
    (
        _c("tweets", "int64", False),
        _known("tweets_with_fields", "any field beyond the defaults (id, text, edit_history_tweet_ids)"),
        _known("tweets_with_counts", "public_metrics (like, retweet, reply or quote count)"),
        _known("tweets_with_author", "author_id"),
        _known("tweets_with_created_at", "created_at"),
        _known("tweets_with_lang", "a language code"),
    ),
    (),
    "which inputs the day's tweets carry: a metric whose inputs no tweet carries is unknown, not zero",
)
METRICS_QUERY_DAILY = _metric(
    "metrics_query_daily",
    (
        _c("query", "string", False, max_chars=1024),
        _c("tweets", "int64", False),
        _c("authors", "int64", False),
        _c("engagement", "int64", False, doc="likes + retweets + replies + quotes"),
        _known("tweets_with_fields", "any field beyond the defaults"),
        _known("tweets_with_counts", "public_metrics"),
        _known("tweets_with_author", "author_id"),
        _c("reply_tweets", "int64", False),
        _c("quote_tweets", "int64", False),
        _c("retweet_tweets", "int64", False),
    ),
    ("query",),
    "headline numbers per query (a tweet matched by two queries counts in both)",
)
METRICS_QUERY_ENTITIES = _metric(
    "metrics_query_entities",
    (
        _c("query", "string", False, max_chars=1024),
        *_ENTITY,
        _c("occurrences", "int64", False),
        _c("tweets", "int64", False),
        _c("rank", "int64", False, doc="within the query and kind"),
    ),
    ("query", "kind", "value"),
    "most used hashtags, mentioned accounts and linked domains per query",
)
METRICS_RISING_ENTITIES = _metric(
    "metrics_rising_entities",
    (
        *_ENTITY,
        _c("occurrences", "int64", False, doc="on dt"),
        _c("previous_occurrences", "int64", False, doc="over the previous days of the comparison window"),
        _c("previous_days", "int64", False, doc="days of that window with tweets carrying fields"),
        _c("previous_mean", "float64", doc="previous_occurrences / previous_days; null without such days"),
        _c("change", "float64", doc="occurrences - previous_mean; null without such days"),
        _c("rank", "int64", False, doc="by change (by occurrences when there is no earlier day)"),
    ),
    ("kind", "value"),
    "the day's hashtags, mentions and domains that rose most against the previous days",
)
METRICS_VOLUME_DAILY = _metric(
    "metrics_volume_daily",
    (_c("query", "string", False, max_chars=1024), _c("tweets", "int64", False)),
    ("query",),
    "tweets delivered per query",
)
METRICS_VOLUME_HOURLY = _metric(
    "metrics_volume_hourly",
    (
        _c("query", "string", False, max_chars=1024),
        _c("created_date", "date", False, doc="UTC day of created_at"),
        _c("hour", "int64", False, doc="UTC hour of created_at, 0..23"),
        _c("tweets", "int64", False),
    ),
    ("query", "created_date", "hour"),
    "tweets per query per UTC hour of creation (tweets without created_at are only in the daily counts)",
)
METRICS_TOP_ENTITIES = _metric(
    "metrics_top_entities",
    (
        *_ENTITY,
        _c("occurrences", "int64", False),
        _c("tweets", "int64", False),
        _c("rank", "int64", False),
    ),
    ("kind", "value"),
    "most used hashtags, mentioned accounts and linked domains",
)
METRICS_TOP_AUTHORS = _metric(
    "metrics_top_authors",
    (
        _c("author_id", "int64", False),
        _c("username", "string", max_chars=64),
        _c("name", "string", max_chars=100),
        _c("followers_count", "int64", doc="null when the API did not expand the author"),
        _c("tweets", "int64", False),
        _c("engagement", "int64", False),
        _c("engagement_rank", "int64", False),
        _c("reach_rank", "int64", False, doc="rank by followers_count"),
    ),
    ("author_id",),
    "authors in the top N by engagement or by follower reach",
)
METRICS_LANGUAGES = _metric(
    "metrics_languages",
    (_c("lang", "string", False, max_chars=16, doc="X language code; 'unknown' when absent"),
     _c("tweets", "int64", False), _share("share")),
    ("lang",),
    "language mix",
)
METRICS_ENGAGEMENT_GROWTH = _metric(
    "metrics_engagement_growth",
    (
        _c("tweets_observed", "int64", False, doc="tweets with counts observed on dt"),
        _c("tweets_with_previous", "int64", False, doc="of those, tweets observed on an earlier day too"),
        _c("engagement", "int64", False, doc="engagement of the observed tweets on dt"),
        _c("previous_engagement", "int64", False, doc="their engagement at the latest earlier observation"),
        _c("engagement_gain", "int64", False, doc="dt minus previous, over tweets_with_previous"),
        _c("like_gain", "int64", False),
        _c("retweet_gain", "int64", False),
        _c("reply_gain", "int64", False),
        _c("quote_gain", "int64", False),
    ),
    (),
    "engagement growth of tweets observed again, from tweet_metrics_daily",
)
METRICS_SENTIMENT_DAILY = _metric(
    "metrics_sentiment_daily",
    (
        _c("tweets", "int64", False),
        _c("scored_tweets", "int64", False),
        _c("not_scored_tweets", "int64", False),
        _c("positive_tweets", "int64", False),
        _c("neutral_tweets", "int64", False),
        _c("negative_tweets", "int64", False),
        _c("mean_compound", "float64", doc="over scored tweets; null when none"),
    ),
    (),
    "sentiment of the day",
)

METRIC_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        METRICS_DAILY,
        METRICS_COVERAGE,
        METRICS_QUERY_DAILY,
        METRICS_QUERY_ENTITIES,
        METRICS_RISING_ENTITIES,
        METRICS_VOLUME_DAILY,
        METRICS_VOLUME_HOURLY,
        METRICS_TOP_ENTITIES,
        METRICS_TOP_AUTHORS,
        METRICS_LANGUAGES,
        METRICS_ENGAGEMENT_GROWTH,
        METRICS_SENTIMENT_DAILY,
    )
}

# Results computed once per tweet and kept (tasks/analytics/analyze.py): a tweet never changes (an edit is a
# new id), so an analysis scores only the tweets of its day that have no row here yet, and a re-run or a
# backfill of an analyzed day scores none. Not per day: a row outlives re-runs of the day that scored it.
TWEET_SENTIMENT = Table(
    "tweet_sentiment",
    (
        _c("tweet_id", "int64", False),
        _c("label", "string", False, max_chars=16, doc="positive, neutral or negative (by compound)"),
        _c("compound", "float64", False, doc="VADER compound score, -1..1"),
        _c("positive", "float64", False),
        _c("neutral", "float64", False),
        _c("negative", "float64", False),
        _c("scored_dt", "date", False, doc="the analyzed day whose run scored the tweet"),
    ),
    primary_key=("tweet_id",),
    description="VADER sentiment of each English tweet, scored once; other languages have no row (not scored)",
    distkey="tweet_id",
    sortkey=("tweet_id",),
)

SCORE_TABLES: dict[str, Table] = {TWEET_SENTIMENT.name: TWEET_SENTIMENT}

# Bookkeeping that lets work be skipped when its inputs did not change: one row per table and day loaded
# (`tasks.warehouse.base.record_load`, written in the load's own transaction), and one per analyzed day
# (`tasks.analytics.analyze`, written in the metrics' transaction). Not for BI tools.
LOADED_DAYS = Table(
    "loaded_days",
    (
        _c("table_name", "string", False, max_chars=64),
        _c("dt", "date", False, doc="the day loaded"),
        _c("content", "string", max_chars=64, doc="SHA-256 of the day's curated Parquet parts; null: not known"),
        _c("version", "int64", False, doc="loads of the day that changed the table's rows"),
        _c("loaded_at", "timestamp", False, doc="the last load (UTC)"),
        _c("changed_at", "timestamp", False, doc="the last load that changed rows (UTC)"),
        *(_c(name, "int64", False, doc=f"the last load's merge: {what}") for name, what in (
            ("staged", "rows staged"), ("new", "keys new to the table"), ("updated", "rows replaced"),
            ("removed", "rows of the day no longer produced"), ("older", "rows not applied: a newer copy is kept"))),
    ),
    primary_key=("table_name", "dt"),
    description="what the last load of each table and day brought, and when rows last changed",
)

ANALYZED_DAYS = Table(
    "analyzed_days",
    (
        _c("dt", "date", False, doc="the analyzed day"),
        _c("inputs", "string", False, max_chars=64,
           doc="SHA-256 of the analysis' SQL and the loads it read (`loaded_days` versions)"),
        _c("analyzed_at", "timestamp", False, doc="when the metrics were computed (UTC)"),
        _c("metric_rows", "int64", False, doc="the day's rows over every metrics table then: fewer now, and the "
           "day is recomputed"),
    ),
    primary_key=("dt",),
    description="the inputs each day's metrics were computed from: an analysis with the same inputs is skipped",
)

STATE_TABLES: dict[str, Table] = {t.name: t for t in (LOADED_DAYS, ANALYZED_DAYS)}
