"""Normalize raw pages into the typed tables of `tasks.schema`, with polars.

A raw file (a batch of pages) is parsed by arrow-rs's JSON reader (`arro3-io`) against an explicit page
schema, which is several times faster than building Python dicts per tweet and tolerates any optional
field being absent (it becomes null). Polars then explodes and unnests the nested lists into one frame
per table.
Rows that cannot be keyed (no or non-numeric id) are counted as skipped, never silently dropped. String
values follow the same rules in every format and warehouse (`clean_strings`); each change is counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from arro3.io import read_json
from isal.isal_zlib import _GzipReader

from tasks.schema import (
    TABLES,
    TWEET_CASHTAGS,
    TWEET_HASHTAGS,
    TWEET_MENTIONS,
    TWEET_METRICS_DAILY,
    TWEET_QUERIES,
    TWEET_REFERENCES,
    TWEET_URLS,
    TWEETS,
    USERS,
    Table,
)

_s, _i, _b = pa.string(), pa.int64(), pa.bool_()


def _span(**extra: pa.DataType) -> pa.DataType:
    return pa.list_(pa.struct({"start": _i, "end": _i, **extra}))


_PUBLIC_METRICS = pa.struct(
    {k: _i for k in ("retweet_count", "reply_count", "like_count", "quote_count", "bookmark_count", "impression_count")}
)
_TWEET = pa.struct(
    {
        "id": _s,
        "text": _s,
        "created_at": _s,
        "author_id": _s,
        "conversation_id": _s,
        "lang": _s,
        "in_reply_to_user_id": _s,
        "possibly_sensitive": _b,
        "edit_history_tweet_ids": pa.list_(_s),
        "public_metrics": _PUBLIC_METRICS,
        "note_tweet": pa.struct({"text": _s}),
        "referenced_tweets": pa.list_(pa.struct({"type": _s, "id": _s})),
        "entities": pa.struct(
            {
                "hashtags": _span(tag=_s),
                "cashtags": _span(tag=_s),
                "mentions": _span(username=_s, id=_s),
                "urls": _span(url=_s, expanded_url=_s, display_url=_s),
            }
        ),
    }
)
_USER = pa.struct(
    {
        "id": _s,
        "username": _s,
        "name": _s,
        "description": _s,
        "location": _s,
        "created_at": _s,
        "verified": _b,
        "profile_image_url": _s,
        "public_metrics": pa.struct(
            {k: _i for k in ("followers_count", "following_count", "tweet_count", "listed_count")}
        ),
    }
)
RAW_LINE_SCHEMA = pa.schema(
    {
        "request": pa.struct({"source": _s, "endpoint": _s, "query": _s, "fetched_at": _s}),
        "status": _i,
        "body": pa.struct(
            {
                "data": pa.list_(_TWEET),
                "includes": pa.struct({"users": pa.list_(_USER)}),
                "errors": pa.list_(pa.struct({"title": _s, "detail": _s})),
                "meta": pa.struct({"result_count": _i, "next_token": _s}),
            }
        ),
    }
)
_MAX_INFLATE_RATIO = 64
_GZIP_READ_CHUNK = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class NormalizeStats:
    pages: int = 0
    tweets_seen: int = 0
    api_errors: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    cleaned: dict[str, int] = field(default_factory=dict)  # "table.column: rule" -> values changed

    def skip(self, reason: str, n: int) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + n

    def clean(self, change: str, n: int) -> None:
        if n:
            self.cleaned[change] = self.cleaned.get(change, 0) + n

    def add(self, other: NormalizeStats) -> None:
        self.pages += other.pages
        self.tweets_seen += other.tweets_seen
        self.api_errors += other.api_errors
        for k, v in other.skipped.items():
            self.skip(k, v)
        for k, v in other.cleaned.items():
            self.clean(k, v)


def _timestamps(text: pl.Series) -> pl.Series:
    """RFC 3339 text (the API's `2026-11-24T10:00:00.000Z`, or with an offset) as UTC timestamps.

    Arrow's ISO 8601 cast parses the API's times about 7 times faster than polars' `%+` (chrono), but
    rejects the whole column for one value it cannot read: that column is parsed again by polars, where
    such a value becomes null and is counted (`_count_unparsed`). Arrow also reads ISO 8601 forms that
    RFC 3339 leaves out (no seconds, an hour-only offset).
    """
    try:
        parsed = pc.cast(text.to_arrow(compat_level=pl.CompatLevel.oldest()), pa.timestamp("us", "UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # An explicit format parses about a third faster than polars' inference, and the values are nearly
        # unique, so its cache of parsed values only costs.
        return text.str.to_datetime("%+", time_zone="UTC", time_unit="us", strict=False, cache=False)
    return pl.Series(text.name, parsed)


def _int_id(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Int64, strict=False)


def _parse(raw: bytes | bytearray) -> pl.DataFrame:
    """One row per page, typed by `RAW_LINE_SCHEMA`; fields the schema does not name are skipped.

    arrow-rs's reader, handed to polars as an Arrow stream, took about a quarter less CPU than pyarrow's
    JSON reader followed by `pl.from_arrow` (both release the GIL while they parse). Unlike pyarrow's,
    it rejects text that is not UTF-8, reads a numeric string into a number field and a number with a
    fraction into an integer field (truncated), and keeps the last of a repeated key; the X API sends
    integer counts and string ids. A line it cannot read raises `polars.exceptions.ComputeError`.
    """
    # All of a file's pages in one record batch: one chunk per column for polars.
    return pl.DataFrame(read_json(raw, RAW_LINE_SCHEMA, batch_size=1 << 20))


def _plain(data: bytes) -> bytes | bytearray:
    """Gunzip every member of `data` (plain bytes pass through).

    ISA-L's inflate: about a third less CPU than the standard library's, and it releases the GIL, so raw files
    inflate on every worker thread at once (its streaming `decompressobj` held the GIL for most of it).
    The text is inflated into a buffer of the size the gzip trailer gives (ISIZE: the last member's size, so
    the whole text of a raw file as `land_pages` writes it): about 15% less CPU than `igzip.decompress`,
    which grows its output as it goes. Anything past that size (more members) is read on.
    """
    if data[:2] != b"\x1f\x8b":
        return data
    size = int.from_bytes(data[-4:], "little")
    # A damaged trailer must not allocate gigabytes: JSON lines inflate to a few times their gzip size.
    text = bytearray(size if size <= _MAX_INFLATE_RATIO * len(data) else 0)
    # The C reader behind `igzip.decompress` (which takes no size hint); it drops the GIL while it inflates.
    reader = _GzipReader(data, _GZIP_READ_CHUNK)
    try:
        with memoryview(text) as view:
            filled = 0
            while filled < len(text) and (n := reader.readinto(view[filled:])):
                filled += n
        rest = reader.readall()
    except EOFError as exc:
        raise EOFError("raw file ends before the end of its gzip stream (truncated?)") from exc
    del text[filled:]
    text += rest
    return text


def read_raw_pages(data: bytes) -> tuple[pl.DataFrame, NormalizeStats]:
    """Parse gzip (or plain) JSON lines of raw pages into a frame with one row per page.

    Returns the frame and what was left out of it, counted (the file itself stays in the bucket untouched):
    lines that are not a page (`pages`, skipped as "page not in the X API v2 shape"), and the tweets and users
    of a page that arrow-rs could not read because of their own bad value (`_salvage`).
    """
    raw = _plain(data)
    if raw[:3] == _UTF8_BOM:  # a byte order mark, which some tools write first, is not JSON to arrow-rs
        raw = raw[3:]
    stats = NormalizeStats()
    if not raw or raw.isspace():
        return pl.from_arrow(RAW_LINE_SCHEMA.empty_table()), stats  # type: ignore[return-value]
    try:
        return _parse(raw), stats
    except pl.exceptions.ComputeError:
        good = []
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                good.append(_parse(line))
            except pl.exceptions.ComputeError:
                page = _salvage(line, stats)
                if page is None:
                    stats.pages += 1
                    stats.skip(PAGE_NOT_V2, 1)
                else:
                    good.append(page)
        frame = pl.concat(good) if good else pl.from_arrow(RAW_LINE_SCHEMA.empty_table())
        return frame, stats  # type: ignore[return-value]


PAGE_NOT_V2 = "page not in the X API v2 shape"
_BAD_TEXT = "{} text not valid UTF-8 (invalid bytes or a lone surrogate)"
_INT64 = (-(2**63), 2**63 - 1)


def _salvage(line: bytes, stats: NormalizeStats) -> pl.DataFrame | None:
    """The page of `line` without the tweets and users that hold a value arrow-rs cannot read, each counted
    by reason; None when the line is not a page at all.

    Only for a page the fast reader rejected, so it may be slow: the standard library's parser reads what
    orjson and arrow-rs refuse (invalid UTF-8 bytes arrive as lone surrogates through `surrogateescape`, like
    a `\\ud800` escape), each tweet and user is checked (`_bad_item`), and the page is written again without
    the bad ones. A count beyond 64 bits is pinned to the int64 bound, which the count rule then makes null
    (`check_counts`, counted), so it costs the value, not the tweet. Anything else arrow-rs still refuses
    is found by reading each tweet and user on its own.
    """
    try:
        page = json.loads(line.decode("utf-8", "surrogateescape"))
        body = page["body"]
        includes = body.get("includes")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    # (kind, the dict holding the list, its key); null or absent lists stay as they are (no rows), and a
    # list of another shape fails the page.
    lists = [(kind, parent, key) for kind, parent, key in (("tweet", body, "data"), ("user", includes, "users"))
             if isinstance(parent, dict) and isinstance(parent.get(key), list)]
    for kind, parent, key in lists:
        kept = []
        for item in parent[key]:
            if reason := _bad_item(item, kind):
                _left_out(stats, kind, reason)
            else:
                kept.append(item)
        parent[key] = kept
    if (frame := _reread(page)) is not None:
        return frame
    # Something else arrow-rs refuses (a nested id sent as a number, ...): read each item on its own.
    found = [(kind, parent, key, parent.pop(key)) for kind, parent, key in lists]
    readable: dict[str, list] = {}
    for kind, parent, key, items in found:
        readable[kind] = []
        for item in items:
            parent[key] = [item]
            if _reread(page) is None:
                _left_out(stats, kind, f"{kind} not in the X API v2 shape")
            else:
                readable[kind].append(item)
        del parent[key]
    for kind, parent, key, _ in found:
        parent[key] = readable[kind]
    return _reread(page)


def _reread(page: dict) -> pl.DataFrame | None:
    try:
        return _parse(orjson.dumps(page))
    except (pl.exceptions.ComputeError, orjson.JSONEncodeError):
        return None


def _left_out(stats: NormalizeStats, kind: str, reason: str) -> None:
    stats.skip(reason, 1)
    if kind == "tweet":
        stats.tweets_seen += 1


def _bad_item(item: object, kind: str) -> str | None:
    """Why a tweet or user cannot be read, or None; pins counts beyond 64 bits in place (see `_salvage`)."""
    if not isinstance(item, dict):
        return None
    if item.get("id") is not None and not isinstance(item["id"], str):
        return f"{kind} id not a string"
    if _has_surrogate(item):
        return _BAD_TEXT.format(kind)
    metrics = item.get("public_metrics")
    if isinstance(metrics, dict):
        for name, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
                metrics[name] = _INT64[0] if value < 0 else _INT64[1]  # NaN too: out of range either way
    return None


def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def read_raw_file(data: bytes) -> pl.DataFrame:
    return read_raw_pages(data)[0]


def normalize_raw_file(data: bytes, day: date) -> tuple[dict[str, pl.DataFrame], NormalizeStats]:
    """`normalize_pages` over one raw file, counting what `read_raw_pages` left out."""
    return normalize_raw_files([data], day)


def normalize_raw_files(files: list[bytes], day: date) -> tuple[dict[str, pl.DataFrame], NormalizeStats]:
    """`normalize_pages` over several raw files at once: fewer, larger frames cost less per row."""
    parsed = [read_raw_pages(data) for data in files]
    pages = pl.concat([frame for frame, _ in parsed], rechunk=False) if parsed else read_raw_pages(b"")[0]
    frames, stats = normalize_pages(pages, day)
    for _, left_out in parsed:
        stats.add(left_out)
    return frames, stats


def normalize_pages(pages: pl.DataFrame, day: date) -> tuple[dict[str, pl.DataFrame], NormalizeStats]:
    """One frame per table from a frame of raw pages (as `read_raw_file` returns)."""
    stats = NormalizeStats(pages=pages.height)
    dt = pl.lit(day, dtype=pl.Date).alias("dt")
    pages = pages.select(
        pl.col("request").struct.field("source").fill_null("unknown").alias("_source"),
        pl.col("request").struct.field("query").fill_null("").alias("_query"),
        _timestamps(pages["request"].struct.field("fetched_at")).alias("fetched_at"),
        pl.col("body").struct.field("data").alias("_data"),
        pl.col("body").struct.field("includes").struct.field("users").alias("_users"),
        pl.col("body").struct.field("errors").list.len().fill_null(0).alias("_n_errors"),
    )
    stats.api_errors = int(pages["_n_errors"].sum() or 0)

    tweets_raw = _explode(pages.select("_source", "_query", "fetched_at", "_data"), "_data")
    tweets_raw = tweets_raw.unnest("_data")
    stats.tweets_seen = tweets_raw.height
    tweets_raw = _drop_counted(
        tweets_raw.with_columns(_int_id("id").alias("tweet_id")), "tweet_id", "tweet without a numeric id", stats
    )

    metrics = pl.col("public_metrics")
    counts = [
        metrics.struct.field(k).alias(k)
        for k in ("retweet_count", "reply_count", "like_count", "quote_count", "bookmark_count", "impression_count")
    ]
    tweets = tweets_raw.select(
        "tweet_id",
        _int_id("author_id").alias("author_id"),
        _int_id("conversation_id").alias("conversation_id"),
        _timestamps(tweets_raw["created_at"]),
        "lang",
        "text",
        pl.col("note_tweet").struct.field("text").alias("note_text"),
        _int_id("in_reply_to_user_id").alias("in_reply_to_user_id"),
        "possibly_sensitive",
        *counts,
        pl.col("edit_history_tweet_ids").list.join(",").alias("edit_history_tweet_ids"),
        "fetched_at",
        dt,
    )
    _count_unparsed(tweets_raw["created_at"], tweets["created_at"], "tweet created_at", stats)
    tweets = check_counts(tweets, TWEETS.name, stats)
    out: dict[str, pl.DataFrame] = {TWEETS.name: tweets, TWEET_METRICS_DAILY.name: tweet_metrics_daily(tweets)}
    out[TWEET_QUERIES.name] = tweets_raw.select(
        "tweet_id", pl.col("_query").alias("query"), pl.col("_source").alias("source"), "fetched_at", dt
    )
    refs = _explode(tweets_raw.select("tweet_id", "referenced_tweets"), "referenced_tweets")
    refs = refs.unnest("referenced_tweets").select(
        "tweet_id", pl.col("type").alias("reference_type"), _int_id("id").alias("referenced_tweet_id"), dt
    )
    stats.skip("reference without a type or numeric id", refs.filter(pl.any_horizontal(pl.all().is_null())).height)
    out[TWEET_REFERENCES.name] = refs.drop_nulls()

    entities = tweets_raw.select("tweet_id", "entities").unnest("entities")
    for table, field_name, cols in (
        (TWEET_HASHTAGS, "hashtags", [pl.col("tag")]),
        (TWEET_CASHTAGS, "cashtags", [pl.col("tag")]),
        (TWEET_MENTIONS, "mentions", [pl.col("username"), _int_id("id").alias("user_id")]),
        (
            TWEET_URLS,
            "urls",
            [
                pl.col("url"),
                pl.col("expanded_url"),
                pl.col("display_url"),
                pl.col("expanded_url")
                .str.extract(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?([^/:?#]+)")
                .str.to_lowercase()
                .str.strip_prefix("www.")
                .alias("domain"),
            ],
        ),
    ):
        spans = _explode(entities.select("tweet_id", field_name), field_name).unnest(field_name)
        frame = spans.select("tweet_id", pl.col("start").alias("start_pos"), pl.col("end").alias("end_pos"), *cols, dt)
        out[table.name] = _drop_counted(frame, "start_pos", f"{field_name} entity without a start", stats)

    users_raw = _explode(pages.select("fetched_at", "_users"), "_users").unnest("_users")
    users_raw = _drop_counted(
        users_raw.with_columns(_int_id("id").alias("user_id")), "user_id", "user without a numeric id", stats
    )
    upm = pl.col("public_metrics")
    out[USERS.name] = users_raw.select(
        "user_id",
        "username",
        "name",
        "description",
        "location",
        _timestamps(users_raw["created_at"]),
        "verified",
        *[upm.struct.field(k).alias(k) for k in ("followers_count", "following_count", "tweet_count", "listed_count")],
        "profile_image_url",
        "fetched_at",
        dt,
    )
    _count_unparsed(users_raw["created_at"], out[USERS.name]["created_at"], "user created_at", stats)
    out[USERS.name] = check_counts(out[USERS.name], USERS.name, stats)
    return {name: clean_strings(TABLES[name].conform(frame), TABLES[name], stats) for name, frame in out.items()}, stats


MAX_COUNT = 10**12
COUNT_OUT_OF_RANGE = "out of range (0 <= n <= 10^12) -> null"


def check_counts(frame: pl.DataFrame, table: str, stats: NormalizeStats) -> pl.DataFrame:
    """Make every engagement or profile count (`*_count`) outside 0..10^12 null, counted per column.

    A count is never negative, and no X count comes near 10^12 (the most followed account has about
    2.3 * 10^8 followers; the most viewed posts about 10^10 impressions). The bound keeps the analysis exact:
    a day's sum of four counts over two million tweets stays below 2^63, so one bad value cannot make the
    warehouse's BIGINT sums overflow after the load committed. The raw page keeps the value as sent.
    """
    counts = [c for c in frame.columns if c.endswith("_count")]
    if frame.is_empty() or not counts:
        return frame
    bad = frame.select(((pl.col(c) < 0) | (pl.col(c) > MAX_COUNT)).sum() for c in counts).row(0, named=True)
    changed = [c for c in counts if bad[c]]
    for c in changed:
        stats.clean(f"{table}.{c}: {COUNT_OUT_OF_RANGE}", bad[c])
    if not changed:
        return frame
    return frame.with_columns(pl.when(pl.col(c).is_between(0, MAX_COUNT)).then(pl.col(c)).alias(c) for c in changed)


NUL_REMOVED = "NUL characters removed"
CUT_TO_BYTES = "cut at a UTF-8 boundary to {} bytes"


def clean_strings(frame: pl.DataFrame, table: Table, stats: NormalizeStats) -> pl.DataFrame:
    """Apply the string rules every warehouse relies on, counting each changed value per column:

    - NUL (U+0000) is removed: PostgreSQL refuses it in text, and Redshift's CSV COPY reads a field of
      only NUL as null (`NULL AS '\\0'`), so no value may be one.
    - An empty string in a nullable column is null: X sends no value either way, and how Redshift's CSV
      COPY reads a quoted empty field under EMPTYASNULL is undocumented (not counted: it loses nothing).
    - A value longer than the column's byte budget (`Column.max_bytes`) is cut at a UTF-8 boundary.

    Every column is probed in one pass (byte lengths are Arrow offsets, so cheap); only columns that
    need a change are rewritten.
    """
    strings = [c for c in table.columns if c.kind == "string"]
    if frame.is_empty() or not strings:
        return frame
    probe = frame.select(
        pl.struct(
            pl.col(c.name).str.contains("\x00", literal=True).sum().alias("nul"),
            (pl.col(c.name).str.len_bytes() == 0).sum().alias("empty"),
            (pl.col(c.name).str.len_bytes() > c.max_bytes).sum().alias("long"),
        ).alias(c.name)
        for c in strings
    ).row(0, named=True)
    for c in strings:
        found = probe[c.name]
        if found["nul"]:
            stats.clean(f"{table.name}.{c.name}: {NUL_REMOVED}", found["nul"])
            frame = frame.with_columns(pl.col(c.name).str.replace_all("\x00", "", literal=True))
        if c.nullable and (found["empty"] or found["nul"]):
            frame = frame.with_columns(pl.when(pl.col(c.name) != "").then(pl.col(c.name)).alias(c.name))
        if found["long"]:  # removing NUL only shortens a value
            frame = _cut_to_bytes(frame, c.name, c.max_bytes, table.name, stats)
    return frame


def _cut_to_bytes(frame: pl.DataFrame, column: str, limit: int, table: str, stats: NormalizeStats) -> pl.DataFrame:
    """Cut the values of `column` longer than `limit` UTF-8 bytes at the last whole character that fits
    (polars slices strings by characters only; the long values are few, so Python cuts those alone)."""
    values = frame[column]
    rows = (values.str.len_bytes() > limit).arg_true()
    if rows.is_empty():
        return frame
    cut = [v.encode()[:limit].decode("utf-8", "ignore") for v in values.gather(rows)]
    stats.clean(f"{table}.{column}: {CUT_TO_BYTES.format(limit)}", len(cut))
    return frame.with_columns(values.clone().scatter(rows, cut))


def _count_unparsed(text: pl.Series, parsed: pl.Series, what: str, stats: NormalizeStats) -> None:
    """Count values that were present but are not RFC 3339 times: their rows are kept, with a null time."""
    stats.skip(f"{what} not an RFC 3339 time (row kept, value null)", parsed.null_count() - text.null_count())


def tweet_metrics_daily(tweets: pl.DataFrame) -> pl.DataFrame:
    """Each tweet's engagement counts as observed on the day `dt` (rows of the `tweets` table).

    Derived from tweets row by row, so the deduplicated tweets give the deduplicated metrics: both keep
    the most recently fetched row of a tweet.
    """
    return tweets.select(
        "tweet_id",
        pl.col("dt").alias("metric_date"),
        *[pl.col(c.name) for c in TWEET_METRICS_DAILY.columns if c.name.endswith("_count")],
        pl.col("fetched_at").alias("observed_at"),
        "dt",
    )


def _explode(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """One row per element of the list `column`; a null or empty list, or a null element, gives no row.

    Null lists are dropped by `explode` itself, so the copy that `drop_nulls` makes is only paid when an
    element is null (rare): most tweets have no cashtags, URLs or references (normalize: about 13% less CPU).
    """
    exploded = frame.explode(column, keep_nulls=False)
    return exploded.drop_nulls(column) if exploded[column].null_count() else exploded


def _drop_counted(frame: pl.DataFrame, column: str, reason: str, stats: NormalizeStats) -> pl.DataFrame:
    """Rows whose `column` is null are counted as skipped and left out (a copy only when there are some)."""
    missing = frame[column].null_count()
    stats.skip(reason, missing)
    return frame.drop_nulls(column) if missing else frame


def deduplicate(frame: pl.DataFrame, table_name: str) -> pl.DataFrame:
    """One row per primary key: the most recently fetched wins (the freshest counts), then sorted by key.

    One stable sort by key then fetch time (ties keep arrival order) and a keep-the-last-of-each-key
    filter: several times cheaper than sort + hash `unique` + sort.
    """
    key = list(TABLES[table_name].primary_key)
    order = next((c for c in ("fetched_at", "observed_at") if c in frame.columns), None)
    frame = frame.sort([*key, order] if order else key, nulls_last=False, maintain_order=True)
    return frame.filter(pl.any_horizontal([pl.col(k).ne_missing(pl.col(k).shift(-1)) for k in key]))
