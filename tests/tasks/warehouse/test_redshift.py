"""Redshift: the COPY statements compiled exactly, the rejected option sets, and the load path end to end
against a real PostgreSQL server with the COPY-from-S3 statement run by `RedshiftCopyDouble`."""

from __future__ import annotations

import gzip
import logging
import os
import uuid
from datetime import date

import orjson
import polars as pl
import pytest
from pydantic import SecretStr

from tasks.analytics.analyze import analyze_day
from tasks.analytics.dashboard import load_dashboard_data
from tasks.lake.curate import manifest_key
from tasks.lake.land import FetchedPage, encode_pages
from tasks.lake.normalize import NormalizeStats, normalize_raw_file
from tasks.lake.s3 import S3Lake
from tasks.schema import TABLES
from tasks.sources.sample import generate_pages
from tasks.warehouse.base import WarehouseError
from tasks.warehouse.postgres import engine_url, redact, widen_column_statements
from tasks.warehouse.redshift import (
    CopyAuthorization,
    CopyOptions,
    CopyOptionsError,
    RedshiftWarehouse,
    build_copy,
    redshift_from_block,
    validate_copy_options,
)
from tests.tasks.warehouse.redshift_grammar import recording

ROLE = "arn:aws:iam::123456789012:role/RedshiftCopy"  # the `redshift` fixture's role too
KEY_ID, SECRET, TOKEN = "TESTCOPYKEYID0000001", "testSecretKeyForTheCopyDoubleOnly0000000", "testSessionTokenForTheCopyDouble"
KEYS = CopyAuthorization(access_key_id=KEY_ID, secret_access_key=SecretStr(SECRET), session_token=SecretStr(TOKEN))
MANIFEST = "s3://lake/x/manifests/tweets/dt=2026-11-24.json"
HARD = 'He said "hi", then, well,\nleft 😀 𠜎 — مرحبا بالعالم'


def clean(sql: str) -> str:
    """Whitespace-insensitive form, as sqlalchemy-redshift's own tests compare compiled COPY."""
    return " ".join(sql.split())


@pytest.mark.parametrize(
    ("options", "auth", "schema", "expected"),
    [
        pytest.param(
            CopyOptions.for_format("parquet"), CopyAuthorization(iam_role_arn=ROLE), None,
            f"COPY \"stg_tweets\" FROM '{MANIFEST}' WITH CREDENTIALS AS 'aws_iam_role={ROLE}' "
            "FORMAT AS PARQUET MANIFEST STATUPDATE OFF",
            id="parquet-iam-role",
        ),
        pytest.param(
            CopyOptions.for_format("parquet", accept_inv_chars="?"), KEYS, None,
            f"COPY \"stg_tweets\" FROM '{MANIFEST}' WITH CREDENTIALS AS 'aws_access_key_id={KEY_ID};"
            f"aws_secret_access_key={SECRET};token={TOKEN}' FORMAT AS PARQUET MANIFEST ACCEPTINVCHARS AS '?' "
            "STATUPDATE OFF",
            id="parquet-keys-acceptinvchars",
        ),
        pytest.param(
            CopyOptions.for_format("csv"), CopyAuthorization(iam_role_arn=ROLE), None,
            f"COPY \"stg_tweets\" FROM '{MANIFEST}' WITH CREDENTIALS AS 'aws_iam_role={ROLE}' FORMAT AS CSV "
            "GZIP MANIFEST EMPTYASNULL IGNOREHEADER AS 1 NULL AS '\\0' TIMEFORMAT AS 'auto' STATUPDATE OFF",
            id="csv-iam-role",
        ),
        pytest.param(
            CopyOptions.for_format("csv", accept_inv_chars="^"),
            CopyAuthorization(access_key_id=KEY_ID, secret_access_key=SecretStr(SECRET)), "analytics",
            f"COPY \"analytics\".\"stg_tweets\" FROM '{MANIFEST}' WITH CREDENTIALS AS 'aws_access_key_id={KEY_ID};"
            f"aws_secret_access_key={SECRET}' FORMAT AS CSV GZIP MANIFEST ACCEPTINVCHARS AS '^' EMPTYASNULL "
            "IGNOREHEADER AS 1 NULL AS '\\0' TIMEFORMAT AS 'auto' STATUPDATE OFF",
            id="csv-keys-acceptinvchars-schema",
        ),
        pytest.param(
            CopyOptions("csv", ignore_header=1, delimiter=";", date_format="YYYY-MM-DD", blanks_as_null=True,
                        truncate_columns=True, max_error=10, region="eu-west-1", stat_update=False,
                        comp_update=False),
            CopyAuthorization(iam_role_arn=ROLE), None,
            f"COPY \"stg_tweets\" FROM '{MANIFEST}' WITH CREDENTIALS AS 'aws_iam_role={ROLE}' FORMAT AS CSV "
            "DELIMITER AS ';' MANIFEST BLANKSASNULL DATEFORMAT AS 'YYYY-MM-DD' IGNOREHEADER AS 1 "
            "TRUNCATECOLUMNS COMPUPDATE OFF MAXERROR AS 10 STATUPDATE OFF REGION 'eu-west-1'",
            id="csv-every-other-option",
        ),
        pytest.param(
            CopyOptions("parquet", stat_update=True), CopyAuthorization(iam_role_arn=ROLE), None,
            f"COPY \"stg_tweets\" FROM '{MANIFEST}' WITH CREDENTIALS AS 'aws_iam_role={ROLE}' "
            "FORMAT AS PARQUET MANIFEST STATUPDATE ON",
            id="parquet-statupdate",
        ),
    ],
)
def test_copy_compiles_to_the_exact_statement(options, auth, schema, expected) -> None:
    copy = build_copy("stg_tweets", MANIFEST, options, auth, schema=schema)
    assert clean(copy.sql) == expected
    assert "$1" not in copy.sql and "%(" not in copy.sql  # literal values, no bind placeholders


def test_logged_copy_masks_every_credential() -> None:
    keys = build_copy("stg_tweets", MANIFEST, CopyOptions(), KEYS)
    for secret in (KEY_ID, SECRET, TOKEN):
        assert secret in keys.sql and secret not in keys.masked and secret not in repr(keys)
    assert "aws_access_key_id=***;aws_secret_access_key=***;token=***" in keys.masked
    role = build_copy("stg_tweets", MANIFEST, CopyOptions(), CopyAuthorization(iam_role_arn=ROLE))
    assert "123456789012" not in role.masked and "arn:aws:iam::************:role/RedshiftCopy" in role.masked
    assert repr(KEYS).count(SECRET) == 0



def test_redact_masks_the_account_of_every_arn_in_an_error() -> None:
    """Redshift's refusal to assume a role names the cluster user's ARN too, with the same account id."""
    message = ("User arn:aws:redshift:us-east-1:123456789012:dbuser:prod/loader is not authorized to assume "
               f"IAM Role {ROLE}")
    masked = redact(message)
    assert "123456789012" not in masked
    assert "arn:aws:redshift:us-east-1:************:dbuser:prod/loader" in masked
    assert "arn:aws:iam::************:role/RedshiftCopy" in masked

@pytest.mark.parametrize(
    ("options", "message"),
    [
        (CopyOptions("csv", escape=True), "CSV cannot be used with ESCAPE"),
        (CopyOptions("csv", remove_quotes=True), "CSV cannot be used with REMOVEQUOTES"),
        (CopyOptions("csv", fixed_width=(("a", 3),)), "CSV cannot be used with FIXEDWIDTH"),
        (CopyOptions("csv", escape=True, remove_quotes=True), "ESCAPE, REMOVEQUOTES"),
        (CopyOptions("parquet", delimiter=","), "PARQUET cannot be used with DELIMITER"),
        (CopyOptions("parquet", ignore_header=1), "PARQUET cannot be used with IGNOREHEADER"),
        (CopyOptions("parquet", gzip=True), "PARQUET cannot be used with GZIP"),
        (CopyOptions("parquet", max_error=5), "PARQUET cannot be used with MAXERROR"),
        (CopyOptions("parquet", region="us-west-2"), "PARQUET cannot be used with REGION"),
        (CopyOptions("parquet", time_format="auto"), "PARQUET cannot be used with TIMEFORMAT"),
        (CopyOptions("parquet", empty_as_null=True, escape=True), "EMPTYASNULL, ESCAPE"),
        (CopyOptions("csv", delimiter=";;"), "DELIMITER must be a single character"),
        (CopyOptions("csv", ignore_header=-1), "IGNOREHEADER"),
        (CopyOptions("parquet", accept_inv_chars="ab"), "ACCEPTINVCHARS takes one ASCII character"),
        (CopyOptions("csv", accept_inv_chars="é"), "ACCEPTINVCHARS takes one ASCII character"),
        (CopyOptions("json"), "not supported"),  # type: ignore[arg-type]
    ],
)
def test_rejected_option_sets_raise_before_sending(options: CopyOptions, message: str) -> None:
    with pytest.raises(CopyOptionsError, match=message):
        validate_copy_options(options)
    with pytest.raises(CopyOptionsError, match=message):
        build_copy("stg_tweets", MANIFEST, options, CopyAuthorization(iam_role_arn=ROLE))


def test_bad_authorization_and_location_raise_clearly() -> None:
    with pytest.raises(WarehouseError, match="iam_role_arn"):
        build_copy("stg_tweets", MANIFEST, CopyOptions(), CopyAuthorization())
    with pytest.raises(CopyOptionsError, match="invalid COPY authorization"):
        build_copy("stg_tweets", MANIFEST, CopyOptions(), CopyAuthorization(iam_role_arn="not-an-arn"))
    bad_key = CopyAuthorization(access_key_id="short", secret_access_key=SecretStr(SECRET))
    with pytest.raises(CopyOptionsError) as caught:
        build_copy("stg_tweets", MANIFEST, CopyOptions(), bad_key)
    assert SECRET not in str(caught.value)
    with pytest.raises(WarehouseError, match="not an s3:// URL"):
        build_copy("stg_tweets", "file:///tmp/m.json", CopyOptions(), CopyAuthorization(iam_role_arn=ROLE))


def test_schema_design_ddl_has_distkey_and_sortkey_in_bytes() -> None:
    ddl = TABLES["tweets"].create_sql("redshift", "analytics")
    assert ddl.startswith('CREATE TABLE IF NOT EXISTS "analytics"."tweets" (')
    assert '"text" VARCHAR(4000)' in ddl and '"note_text" VARCHAR(65535)' in ddl
    assert ddl.endswith('DISTSTYLE KEY DISTKEY ("tweet_id")\nCOMPOUND SORTKEY ("created_at")')


# --- end to end: real PostgreSQL, real moto S3, COPY by the double ------------------------------------


def _contents(warehouse: RedshiftWarehouse, table: str) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in TABLES[table].column_names)
    return warehouse.query(f'SELECT {cols} FROM "{warehouse.schema}"."{table}" ORDER BY 1, 2, 3')


def test_parquet_day_loads_every_table_and_reruns_to_the_same_rows(
    redshift, lake: S3Lake, day: date, sample_frames, curate_frames, caplog: pytest.LogCaptureFixture
) -> None:
    frames = sample_frames(day, 150)
    files = curate_frames(lake, day, frames, parts=2)
    warehouse, double = redshift()
    warehouse.ensure_tables()
    with caplog.at_level(logging.INFO):
        first = {name: warehouse.load_day(lake, f) for name, f in files.items()}
    before = {name: _contents(warehouse, name) for name in TABLES}
    second = {name: warehouse.load_day(lake, f) for name, f in files.items()}

    assert {n: r.total for n, r in first.items()} == {n: f.rows for n, f in files.items()}
    assert all(r.new == r.staged and r.updated == 0 for r in first.values())
    assert all(r.updated == r.staged and r.new == 0 for r in second.values())
    assert {name: _contents(warehouse, name) for name in TABLES} == before
    assert warehouse.row_counts() == {n: f.rows for n, f in files.items()}

    copied = [name for name, f in files.items() if f.rows]
    assert len(double.statements) == 2 * len(copied)  # tables without rows that day send no COPY
    tweets_copy = clean(double.statements[0])
    url = lake.url(manifest_key("tweets", day, "parquet"))
    assert tweets_copy == (f"COPY \"stg_tweets\" FROM '{url}' WITH CREDENTIALS AS 'aws_iam_role={ROLE}' "
                           "FORMAT AS PARQUET MANIFEST STATUPDATE OFF")
    logged = [r.getMessage() for r in caplog.records if 'COPY "stg_tweets"' in r.getMessage()]
    assert logged and all("123456789012" not in m for m in caplog.messages)
    assert clean(logged[0]) == "tweets: " + clean(redact(double.statements[0]))


def test_a_table_with_no_rows_sends_no_copy(redshift, lake: S3Lake, day: date, sample_frames, curate_frames) -> None:
    frames = sample_frames(day, 20)
    frames["tweet_cashtags"] = frames["tweet_cashtags"].clear()
    files = curate_frames(lake, day, frames)
    warehouse, double = redshift()
    warehouse.ensure_tables()
    result = warehouse.load_day(lake, files["tweet_cashtags"])
    assert (result.staged, result.total) == (0, 0) and double.statements == []


def _with_hard_rows(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    tweets = frames["tweets"].with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(HARD)).otherwise(pl.col("text")).alias("text"),
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(None)).otherwise(pl.col("lang")).alias("lang"),
    )
    return {**frames, "tweets": tweets}


def test_csv_manifest_keeps_quotes_newlines_emoji_rtl_and_nulls(
    redshift, lake: S3Lake, day: date, sample_frames, curate_frames
) -> None:
    frames = _with_hard_rows(sample_frames(day, 60))
    files = curate_frames(lake, day, frames, parts=2)
    warehouse, double = redshift(CopyOptions.for_format("csv"))
    warehouse.ensure_tables()
    result = warehouse.load_day(lake, files["tweets"])
    assert result.total == files["tweets"].rows == 60
    assert "FORMAT AS CSV" in double.statements[0] and "IGNOREHEADER AS 1" in double.statements[0]
    rows = dict(warehouse.query(f'SELECT tweet_id, text FROM "{warehouse.schema}".tweets'))
    expected = frames["tweets"].select("tweet_id", "text").rows()
    assert rows == dict(expected) and HARD in rows.values()
    nulls = warehouse.query(f'SELECT COUNT(*) FROM "{warehouse.schema}".tweets WHERE lang IS NULL')[0][0]
    assert nulls == frames["tweets"]["lang"].null_count() >= 1
    created = warehouse.query(f'SELECT MIN(created_at) FROM "{warehouse.schema}".tweets')[0][0]
    assert created == frames["tweets"]["created_at"].min()


def test_copy_error_names_file_line_column_and_reason_and_commits_nothing(
    redshift, lake: S3Lake, day: date, sample_frames, curate_frames
) -> None:
    frames = sample_frames(day, 40)
    files = curate_frames(lake, day, frames)
    warehouse, _ = redshift(CopyOptions.for_format("csv"))
    warehouse.ensure_tables()
    warehouse.load_day(lake, files["users"])
    before = _contents(warehouse, "users")
    # 65 emoji are 65 characters (PostgreSQL's VARCHAR(256) takes them) but 260 bytes: Redshift refuses.
    users = frames["users"].with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("😀" * 65)).otherwise(pl.col("username")).alias("username")
    )
    files = curate_frames(lake, day, {**frames, "users": users})
    with pytest.raises(WarehouseError) as caught:
        warehouse.load_day(lake, files["users"])
    message = str(caught.value)
    key = files["users"].csv[0].key
    csv_text = gzip.decompress(lake.read(key)).decode()
    line = csv_text[: csv_text.index("😀" * 65)].count("\n") + 1
    assert lake.url(key) in message and f"line {line}, column username" in message
    assert "String length exceeds DDL length" in message and "nothing was committed" in message
    assert _contents(warehouse, "users") == before


def _corrupt_lang(data: bytes, tweet_id: int) -> tuple[bytes, int]:
    """Put two invalid UTF-8 bytes at the start of the `lang` field (5th column) of `tweet_id`'s row."""
    start = data.index(b"\n%d," % tweet_id) + 1
    at = start
    for _ in range(4):
        at = data.index(b",", at) + 1
    return data[:at] + b"\xff\xfe" + data[at:], data[:start].count(b"\n") + 1


def test_invalid_utf8_fails_without_acceptinvchars_and_is_replaced_with_it(
    redshift, lake: S3Lake, day: date, sample_frames, curate_frames
) -> None:
    frames = sample_frames(day, 30)
    files = curate_frames(lake, day, frames)
    key = files["tweets"].csv[0].key
    tweet_id = frames["tweets"].filter(pl.col("lang") == "en")["tweet_id"][0]
    data, line = _corrupt_lang(gzip.decompress(lake.read(key)), tweet_id)
    lake.write(key, gzip.compress(data))

    strict, _ = redshift(CopyOptions.for_format("csv"))
    strict.ensure_tables()
    with pytest.raises(WarehouseError, match=rf"line {line}, column lang .*invalid or unsupported UTF8"):
        strict.load_day(lake, files["tweets"])
    assert strict.row_counts()["tweets"] == 0

    lenient, _ = redshift(CopyOptions.for_format("csv", accept_inv_chars="?"))
    lenient.ensure_tables()
    assert lenient.load_day(lake, files["tweets"]).total == 30
    lang = lenient.query(f'SELECT lang FROM "{lenient.schema}".tweets WHERE tweet_id = :t', {"t": tweet_id})
    assert lang == [("??en",)]


def test_staged_rows_must_equal_the_manifest_record_count(
    redshift, lake: S3Lake, day: date, sample_frames, curate_frames
) -> None:
    files = curate_frames(lake, day, sample_frames(day, 30))
    key = files["tweets"].manifests["parquet"]
    manifest = orjson.loads(lake.read(key))
    manifest["meta"]["record_count"] += 1
    lake.write(key, orjson.dumps(manifest))
    warehouse, _ = redshift()
    warehouse.ensure_tables()
    with pytest.raises(WarehouseError, match="COPY loaded 30 rows but the manifest lists 31"):
        warehouse.load_day(lake, files["tweets"])
    assert warehouse.row_counts()["tweets"] == 0


def test_missing_mandatory_file_fails_the_copy(redshift, lake: S3Lake, day: date, sample_frames, curate_frames) -> None:
    files = curate_frames(lake, day, sample_frames(day, 30))
    lake.delete(files["tweets"].keys("parquet"))
    warehouse, _ = redshift()
    warehouse.ensure_tables()
    with pytest.raises(WarehouseError, match="mandatory file .* not found"):
        warehouse.load_day(lake, files["tweets"])


def test_mixed_case_schema_reruns_without_ddl(redshift, lake: S3Lake, day: date, sample_frames,
                                              curate_frames) -> None:
    """Redshift folds `Analytics` to `analytics` and its catalog answers with the folded name (the double
    folds quoted identifiers the same way): a re-run must find every column, not add them again."""
    name = f"Analytics_{uuid.uuid4().hex[:6]}"
    warehouse, double = redshift(schema=name)
    assert warehouse.schema == name.lower()
    files = curate_frames(lake, day, sample_frames(day, 30))
    warehouse.ensure_tables()
    warehouse.load_day(lake, files["tweets"])
    with recording(warehouse.engine, double) as sent:
        warehouse.ensure_tables()
        assert warehouse.load_day(lake, files["tweets"]).total == files["tweets"].rows
    assert not [s for s in sent if s.startswith("ALTER")]
    assert all(name not in s for s in sent) and any(f'"{name.lower()}"."tweets"' in s for s in sent)
    schemas = warehouse.query("SELECT schema_name FROM information_schema.schemata WHERE schema_name ILIKE :s",
                              {"s": name})
    assert schemas == [(name.lower(),)]


def _long_post_frames(day: date, note: str, text: str) -> tuple[dict[str, pl.DataFrame], NormalizeStats]:
    """A day's frames, normalized from sample pages whose first tweet carries `note` and `text`."""
    pages = list(generate_pages(day, "q", 40))
    pages[0]["data"][0]["note_tweet"] = {"text": note}
    pages[0]["data"][0]["text"] = text
    request = {"source": "sample", "query": "q", "fetched_at": f"{day.isoformat()}T23:59:59.999Z"}
    return normalize_raw_file(encode_pages(FetchedPage(request=request, body=p) for p in pages), day)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_25000_character_cjk_long_post_loads_in_both_formats(redshift, lake: S3Lake, day: date, curate_frames,
                                                               fmt: str) -> None:
    """25,000 characters of CJK (3 bytes each) and supplementary ideographs (4) are about 77,000 bytes:
    more than Redshift's VARCHAR(65535). The value is cut at the last whole character that fits, counted."""
    note = ("漢字かな𠜎" * 5000)[:25000]
    frames, stats = _long_post_frames(day, note, "short text")
    assert len(note) == 25000 and len(note.encode()) > 75000
    files = curate_frames(lake, day, frames)
    warehouse, _ = redshift(CopyOptions.for_format(fmt))
    warehouse.ensure_tables()
    assert warehouse.load_day(lake, files["tweets"]).total == files["tweets"].rows
    tweet_id = frames["tweets"]["tweet_id"][0]
    (loaded,) = warehouse.query(f'SELECT note_text FROM "{warehouse.schema}".tweets WHERE tweet_id = :t',
                                {"t": tweet_id})[0]
    assert note.startswith(loaded) and 65535 - 4 < len(loaded.encode()) <= 65535
    assert stats.cleaned == {"tweets.note_text: cut at a UTF-8 boundary to 65535 bytes": 1}


def test_a_text_that_is_exactly_backslash_n_round_trips_in_csv(redshift, lake: S3Lake, day: date,
                                                               curate_frames) -> None:
    r"""Redshift's default CSV null string is `\N`: with `NULL AS '\0'` a text `\N` stays text, nulls stay null."""
    frames, _ = _long_post_frames(day, "a long \\N post", "\\N")
    files = curate_frames(lake, day, frames)
    warehouse, _ = redshift(CopyOptions.for_format("csv"))
    warehouse.ensure_tables()
    warehouse.load_day(lake, files["tweets"])
    tweet_id = frames["tweets"]["tweet_id"][0]
    row = warehouse.query(f'SELECT text, note_text FROM "{warehouse.schema}".tweets WHERE tweet_id = :t',
                          {"t": tweet_id})
    assert row == [("\\N", "a long \\N post")]
    nulls = warehouse.query(f'SELECT COUNT(*) FROM "{warehouse.schema}".tweets WHERE note_text IS NULL')[0][0]
    assert nulls == frames["tweets"]["note_text"].null_count() > 0


def test_a_widened_column_migrates_outside_the_load_transaction(redshift) -> None:
    """Redshift widens a VARCHAR in place only outside a transaction block (the double refuses it inside)."""
    warehouse, double = redshift()
    ddl = warehouse.design(TABLES["users"]).create_sql("redshift", warehouse.schema)
    assert '"name" VARCHAR(400)' in ddl
    insert = (f'INSERT INTO "{warehouse.schema}".users (user_id, name, fetched_at, dt) '
              "VALUES (7, 'Ada', now(), DATE '2026-11-01')")
    warehouse.execute_script([f'CREATE SCHEMA "{warehouse.schema}"',
                              ddl.replace('"name" VARCHAR(400)', '"name" VARCHAR(20)'), insert])
    with recording(warehouse.engine, double) as sent:
        warehouse.ensure_tables()
    assert [s for s in sent if "ALTER COLUMN" in s] == [
        f'ALTER TABLE "{warehouse.schema}"."users" ALTER COLUMN "name" TYPE VARCHAR(400)']
    length = warehouse.query(
        "SELECT character_maximum_length FROM information_schema.columns WHERE table_schema = :s "
        "AND table_name = 'users' AND column_name = 'name'", {"s": warehouse.schema})
    assert length == [(400,)]
    assert warehouse.query(f'SELECT user_id, name FROM "{warehouse.schema}".users') == [(7, "Ada")]
    with recording(warehouse.engine, double) as again:
        warehouse.ensure_tables()
    assert not [s for s in again if s.startswith("ALTER")]


def test_a_widened_key_column_is_a_clear_error() -> None:
    table = TABLES["tweet_queries"]
    with pytest.raises(WarehouseError, match=r"tweet_queries.query .* key column cannot be widened in place"):
        widen_column_statements(table, {"query": 100}, "redshift", "analytics")
    assert widen_column_statements(table, {"query": 100}, "postgresql", None) == []  # VARCHAR has no length there


def test_migration_adds_new_columns_and_keeps_rows(redshift) -> None:
    warehouse, _ = redshift()
    ddl = warehouse.design(TABLES["users"]).create_sql("redshift", warehouse.schema)
    old = ddl.replace('    "location" VARCHAR(400),\n', "")
    assert old != ddl
    insert = (f'INSERT INTO "{warehouse.schema}".users (user_id, fetched_at, dt) '
              "VALUES (7, now(), DATE '2026-11-01')")
    warehouse.execute_script([f'CREATE SCHEMA "{warehouse.schema}"', old, insert])
    warehouse.ensure_tables()
    columns = [r[0] for r in warehouse.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = 'users' "
        "ORDER BY ordinal_position", {"s": warehouse.schema})]
    assert set(columns) == set(TABLES["users"].column_names) and columns[-1] == "location"
    assert warehouse.query(f'SELECT user_id, location FROM "{warehouse.schema}".users') == [(7, None)]
    warehouse.ensure_tables()  # idempotent


def test_block_selects_authorization_and_fails_clearly_without_one() -> None:
    from blocks.warehouse import Warehouse as WarehouseBlock

    block = WarehouseBlock(kind="redshift", url="redshift+redshift_connector://loader@example.invalid:5439/dev",
                           password=SecretStr("pw-never-logged"), iam_role_arn=ROLE, copy_format="csv")
    warehouse = redshift_from_block(block)
    assert warehouse.auth.iam_role_arn == ROLE and warehouse.options == CopyOptions.for_format("csv")
    assert "pw-never-logged" not in warehouse.describe() and "***" in warehouse.describe()
    with pytest.raises(WarehouseError, match="iam_role_arn"):
        redshift_from_block(WarehouseBlock(kind="redshift", url=block.url))


def test_block_with_an_aws_credentials_block_copies_with_masked_keys(prefect_server) -> None:
    from prefect_aws import AwsCredentials

    from blocks.warehouse import Warehouse as WarehouseBlock

    name = f"copy-keys-{uuid.uuid4().hex[:8]}"
    AwsCredentials(aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, aws_session_token=TOKEN).save(name)
    block = WarehouseBlock(kind="redshift", url="redshift+redshift_connector://loader@example.invalid:5439/dev",
                           aws_credentials_block=name)
    warehouse = redshift_from_block(block)
    copy = build_copy("stg_tweets", MANIFEST, warehouse.options, warehouse.auth)
    assert f"aws_secret_access_key={SECRET};token={TOKEN}" in copy.sql
    assert SECRET not in copy.masked and TOKEN not in copy.masked and SECRET not in repr(warehouse.auth)
    with pytest.raises(WarehouseError, match="was not found"):
        redshift_from_block(WarehouseBlock(kind="redshift", url=block.url, aws_credentials_block="no-such-block"))


# --- contract tests: a real cluster, only when one is configured ---------------------------------------

CONTRACT_ENV = ("REDSHIFT_URL", "REDSHIFT_IAM_ROLE_ARN", "X_LAKE_BUCKET")
missing = [v for v in CONTRACT_ENV if not os.environ.get(v)]


@pytest.fixture
def cluster(day: date):
    """A RedshiftWarehouse on the cluster in REDSHIFT_URL (password there or in WAREHOUSE_PASSWORD), a
    fresh schema named in mixed case (Redshift folds it), and a fresh folder of X_LAKE_BUCKET (AWS
    credentials from the environment)."""
    from prefect_aws import AwsCredentials, S3Bucket

    folder = f"x-pipeline-contract/{uuid.uuid4().hex[:10]}"
    lake = S3Lake(S3Bucket(bucket_name=os.environ["X_LAKE_BUCKET"], bucket_folder=folder,
                           credentials=AwsCredentials()))
    url = engine_url(os.environ["REDSHIFT_URL"], os.environ.get("WAREHOUSE_PASSWORD"))
    schema = f"X_Contract_{uuid.uuid4().hex[:8]}"
    made: list[RedshiftWarehouse] = []

    def make(options: CopyOptions | None = None) -> RedshiftWarehouse:
        made.append(RedshiftWarehouse(url, schema, CopyAuthorization(iam_role_arn=os.environ["REDSHIFT_IAM_ROLE_ARN"]),
                                      options))
        return made[-1]

    yield make, lake
    for warehouse in made:
        warehouse.execute_script([f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'])
        warehouse.close()
    lake.delete(list(lake.list("")))


@pytest.mark.redshift
@pytest.mark.skipif(bool(missing), reason=f"contract tests need a real Redshift cluster: set {', '.join(missing)}")
def test_contract_parquet_and_csv_days_load_and_rerun(cluster, day: date, sample_frames, curate_frames) -> None:
    make, lake = cluster
    frames = _with_hard_rows(sample_frames(day, 200))
    files = curate_frames(lake, day, frames, parts=2)
    parquet = make()
    parquet.ensure_tables()
    for f in files.values():
        parquet.load_day(lake, f)
        parquet.load_day(lake, f)
    assert parquet.row_counts() == {n: f.rows for n, f in files.items()}
    design = parquet.query('SELECT diststyle, sortkey1 FROM svv_table_info WHERE "schema" = :s AND "table" = :t',
                           {"s": parquet.schema, "t": "tweets"})
    assert [(d.strip(), k.strip()) for d, k in design] == [("KEY(tweet_id)", "created_at")]
    parquet.execute_script([f'ALTER TABLE "{parquet.schema}".users DROP COLUMN location'])
    parquet.ensure_tables()  # the migration adds it back, keeping every row
    assert parquet.row_counts()["users"] == files["users"].rows
    assert parquet.query(f'SELECT COUNT(location) FROM "{parquet.schema}".users') == [(0,)]
    csv = make(CopyOptions.for_format("csv"))
    assert csv.load_day(lake, files["tweets"]).total == files["tweets"].rows
    rows = dict(csv.query(f'SELECT tweet_id, text FROM "{csv.schema}".tweets'))
    assert HARD in rows.values()
    nulls = csv.query(f'SELECT COUNT(*) FROM "{csv.schema}".tweets WHERE lang IS NULL')[0][0]
    assert nulls == frames["tweets"]["lang"].null_count()


@pytest.mark.redshift
@pytest.mark.skipif(bool(missing), reason=f"contract tests need a real Redshift cluster: set {', '.join(missing)}")
def test_contract_copy_error_is_read_from_sys_load_error_detail(cluster, day: date, sample_frames,
                                                                 curate_frames) -> None:
    make, lake = cluster
    frames = sample_frames(day, 30)
    files = curate_frames(lake, day, frames)
    key = files["tweets"].csv[0].key
    tweet_id = frames["tweets"].filter(pl.col("lang") == "en")["tweet_id"][0]
    data, line = _corrupt_lang(gzip.decompress(lake.read(key)), tweet_id)
    lake.write(key, gzip.compress(data))
    warehouse = make(CopyOptions.for_format("csv"))
    warehouse.ensure_tables()
    with pytest.raises(WarehouseError) as caught:
        warehouse.load_day(lake, files["tweets"])
    assert lake.url(key) in str(caught.value) and f"line {line}, column lang" in str(caught.value)
    assert warehouse.row_counts()["tweets"] == 0


@pytest.mark.redshift
@pytest.mark.skipif(bool(missing), reason=f"contract tests need a real Redshift cluster: set {', '.join(missing)}")
def test_contract_what_only_a_cluster_settles(cluster, day: date, curate_frames) -> None:
    """The cases the COPY double models from Redshift's documentation, on Redshift itself: the folded
    mixed-case schema re-runs without DDL, a long CJK post cut to 65535 bytes and a `\\N` text load in both
    formats, nulls stay null, a VARCHAR widens outside a transaction, and the analysis (`tag`) and views run."""
    make, lake = cluster
    note = ("漢字かな𠜎" * 5000)[:25000]
    frames, _ = _long_post_frames(day, note, "\\N")
    files = curate_frames(lake, day, frames)
    tweet_id = frames["tweets"]["tweet_id"][0]
    for fmt in ("parquet", "csv"):
        warehouse = make(CopyOptions.for_format(fmt))
        warehouse.ensure_tables()
        for f in files.values():
            warehouse.load_day(lake, f)
        assert warehouse.row_counts() == {n: f.rows for n, f in files.items()}
        text, loaded = warehouse.query(f'SELECT "text", "note_text" FROM "{warehouse.schema}"."tweets" '
                                       "WHERE tweet_id = :t", {"t": tweet_id})[0]
        assert text == "\\N" and note.startswith(loaded) and 65531 < len(loaded.encode()) <= 65535
        nulls = warehouse.query(f'SELECT COUNT(*) FROM "{warehouse.schema}"."users" WHERE "location" IS NULL')
        assert nulls == [(frames["users"]["location"].null_count(),)]
    with recording(warehouse.engine) as sent:
        warehouse.ensure_tables()
    assert not [s for s in sent if s.startswith("ALTER")]
    warehouse.execute_script([f'ALTER TABLE "{warehouse.schema}"."users" DROP COLUMN "name"',
                              f'ALTER TABLE "{warehouse.schema}"."users" ADD COLUMN "name" VARCHAR(20)'])
    warehouse.ensure_tables()
    assert warehouse.query("SELECT character_maximum_length FROM information_schema.columns WHERE "
                           "table_schema = :s AND table_name = 'users' AND column_name = 'name'",
                           {"s": warehouse.schema}) == [(400,)]
    metrics = analyze_day(warehouse, day)
    assert metrics.rows["metrics_top_entities"] > 0
    assert load_dashboard_data(warehouse, day).today["tweets"] == files["tweets"].rows


def test_a_held_lock_fails_the_load_at_the_statement_timeout(
    redshift, pg_server: str, lake: S3Lake, day: date, sample_frames, curate_frames
) -> None:
    """Redshift has no lock_timeout: its sessions set statement_timeout only, which also ends a wait for a
    lock; the error names the table and the timeout."""
    import psycopg2

    from tasks.warehouse.postgres import Timeouts

    warehouse, _ = redshift(timeouts=Timeouts(lock_seconds=1, statement_seconds=1))
    assert warehouse.session_settings() == ["SET statement_timeout TO 1000"]
    warehouse.ensure_tables()
    files = curate_frames(lake, day, sample_frames(day, 20))["tweets"]
    holder = psycopg2.connect(pg_server)
    try:
        with holder.cursor() as cur:
            cur.execute("SET idle_in_transaction_session_timeout = '30s'")  # never hangs the test
            cur.execute(f'LOCK TABLE "{warehouse.schema}"."tweets" IN ACCESS EXCLUSIVE MODE')
        with pytest.raises(WarehouseError, match=r"tweets .*statement_timeout_seconds = 1"):
            warehouse.load_day(lake, files)
    finally:
        holder.close()
    assert warehouse.query("SHOW statement_timeout") == [("1s",)]
    assert warehouse.query("SHOW lock_timeout") == [("0",)]
