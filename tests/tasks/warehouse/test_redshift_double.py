"""Unit tests of `RedshiftCopyDouble` itself: each Redshift rule it models, on tiny Parquet and CSV files in
moto's S3 and staging tables on the test PostgreSQL server. Each test fails if its rule is taken out."""

from __future__ import annotations

import gzip
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import boto3
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy_redshift.commands import Compression, CopyCommand, Format
from sqlalchemy_redshift.dialect import RedshiftDialect_redshift_connector

from tasks.lake.curate import parquet_bytes
from tasks.schema import TABLES
from tests.tasks.warehouse.redshift_copy_double import (
    RedshiftCopyDouble,
    StatementError,
    fold_identifiers,
    parse_copy,
)

ROLE = "arn:aws:iam::123456789012:role/RedshiftCopy"
# The production statements' options (sqlalchemy-redshift's order; `NULL AS '\0'` is a backslash and a zero).
CSV = ("FORMAT AS CSV GZIP MANIFEST EMPTYASNULL IGNOREHEADER AS 1 NULL AS '\\0' TIMEFORMAT AS 'auto' "
       "STATUPDATE OFF")
PARQUET = "FORMAT AS PARQUET MANIFEST STATUPDATE OFF"
UNDOCUMENTED = "Refused by the COPY double"


@dataclass
class Stage:
    """A fresh schema on the double's engine, and a bucket in moto's S3, for one test."""

    engine: sa.Engine
    s3: object
    bucket: str
    schema: str
    tables: int = 0

    def table(self, columns: str) -> str:
        self.tables += 1
        name = f'"{self.schema}"."stg_{self.tables}"'
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {name} ({columns})")
        return name

    def manifest(self, *files: bytes) -> str:
        prefix = uuid.uuid4().hex[:8]
        entries = []
        for n, data in enumerate(files):
            key = f"{prefix}/part-{n}"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
            entries.append({"url": f"s3://{self.bucket}/{key}", "mandatory": True,
                            "meta": {"content_length": len(data)}})
        manifest = orjson.dumps({"entries": entries})
        self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/manifest.json", Body=manifest)
        return f"s3://{self.bucket}/{prefix}/manifest.json"

    def copy(self, table: str, options: str, *files: bytes) -> list[tuple]:
        """COPY the files into `table` in one transaction; the loaded rows in insertion order."""
        url = self.manifest(*files)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"COPY {table} FROM '{url}' IAM_ROLE '{ROLE}' {options}")
            count = conn.exec_driver_sql("SELECT pg_last_copy_count()").scalar_one()
            rows = [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY ctid")]
            conn.exec_driver_sql(f"TRUNCATE {table}")
        assert count == len(rows)
        return rows

    def csv(self, columns: str, *lines: bytes, options: str = CSV) -> list[tuple]:
        table = self.table(columns)
        body = b"".join(line + b"\n" for line in lines)
        if "IGNOREHEADER" in options:
            body = b"header\n" + body
        return self.copy(table, options, gzip.compress(body) if "GZIP" in options else body)

    def parquet(self, columns: str, data: pa.Table, options: str = PARQUET) -> list[tuple]:
        return self.copy(self.table(columns), options, parquet_file(data))

    def load_error(self) -> tuple[str, str, int, int]:
        """The last row of sys_load_error_detail: message, column, line, error code."""
        with self.engine.connect() as conn:
            return tuple(conn.exec_driver_sql(
                "SELECT TRIM(error_message), TRIM(column_name), line_number, error_code "
                "FROM public.sys_load_error_detail ORDER BY query_id DESC LIMIT 1").one())

    def refused(self, load, match: str) -> tuple[str, str, int, int]:
        """Run `load`, which must fail with a load error: the sys_load_error_detail row, `match` in its
        message."""
        with pytest.raises(sa.exc.DBAPIError, match="Check 'sys_load_error_detail'"):
            load()
        error = self.load_error()
        assert match in error[0], error
        return error

    def autocommit(self, sql: str) -> None:
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(sql)

    def column_type(self, table: str, column: str) -> str:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                "AND attname = %s", (table, column)).scalar_one()


def parquet_file(data: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(data, buf)
    return buf.getvalue()


def _engine(pg_server: str) -> sa.Engine:
    return sa.create_engine(sa.make_url(pg_server).set(drivername="postgresql+psycopg2"))


@pytest.fixture(scope="module")
def s3_and_bucket(moto_server: str):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                      aws_access_key_id="testing-key-id", aws_secret_access_key="testing-secret-value")
    bucket = f"double-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    return s3, bucket


@pytest.fixture(scope="module")
def double(pg_server: str, moto_server: str) -> Iterator[RedshiftCopyDouble]:
    engine = _engine(pg_server)
    installed = RedshiftCopyDouble(engine, moto_server)
    yield installed
    installed.remove()
    engine.dispose()


@pytest.fixture
def stage(double: RedshiftCopyDouble, s3_and_bucket) -> Iterator[Stage]:
    schema = f"dbl_{uuid.uuid4().hex[:10]}"
    with double.engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    yield Stage(double.engine, *s3_and_bucket, schema)
    with double.engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


# --- the COPY statement ------------------------------------------------------------------------------------


def _compiled(**kwargs) -> str:
    command = CopyCommand(sa.Table("stg_tweets", sa.MetaData()), "s3://lake/m.json", iam_role_arns=ROLE,
                          manifest=True, **kwargs)
    dialect = RedshiftDialect_redshift_connector()
    return str(command.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def test_parse_copy_reads_the_production_statements_null_as_and_statupdate() -> None:
    csv = parse_copy(_compiled(format=Format.csv, compression=Compression.gzip, ignore_header=1,
                               time_format="auto", empty_as_null=True, dangerous_null_delimiter="\\0",
                               stat_update=False))
    assert csv is not None and "NULL AS '\\0'" in _compiled(format=Format.csv, dangerous_null_delimiter="\\0")
    assert csv.options == {"CREDENTIALS": f"aws_iam_role={ROLE}", "FORMAT": "CSV", "GZIP": True,
                           "MANIFEST": True, "EMPTYASNULL": True, "IGNOREHEADER": "1", "NULL": "\\0",
                           "TIMEFORMAT": "auto", "STATUPDATE": "OFF"}
    assert csv.null_string == "\0"  # '\0' means a field of only NUL
    parquet = parse_copy(_compiled(format=Format.parquet, stat_update=False))
    assert parquet is not None and parquet.options["STATUPDATE"] == "OFF" and parquet.null_string == "\\N"
    assert parse_copy(f"COPY t FROM 's3://b/m' IAM_ROLE '{ROLE}' NULL 'x' MANIFEST").options["NULL"] == "x"
    with pytest.raises(StatementError, match="NULL AS needs a quoted"):
        parse_copy(f"COPY t FROM 's3://b/m' IAM_ROLE '{ROLE}' NULL AS x")


def test_parquet_copy_refuses_null_as(stage: Stage) -> None:
    data = pa.table({"n": pa.array([1], pa.int64())})
    with pytest.raises(sa.exc.DBAPIError, match="NULL argument is not supported for PARQUET based COPY"):
        stage.parquet("n BIGINT", data, options=PARQUET + " NULL AS '\\0'")
    assert stage.parquet("n BIGINT", data) == [(1,)]


# --- Parquet column types ----------------------------------------------------------------------------------


def _row_of(table) -> dict:
    values = {"int64": 7, "string": "héllo 😀", "bool": True, "date": date(2026, 11, 24), "float64": 0.5,
              "timestamp": datetime(2026, 11, 24, 12, 30, tzinfo=UTC)}
    return {c.name: values[c.kind] for c in table.columns}


@pytest.mark.parametrize("name", list(TABLES))
def test_curated_parquet_of_every_table_loads(stage: Stage, name: str) -> None:
    table = TABLES[name]
    full = _row_of(table)
    sparse = {c.name: (full[c.name] if not c.nullable else None) for c in table.columns}
    frame = pl.DataFrame([full, sparse], schema=table.polars_schema)
    columns = ", ".join(f'"{c.name}" {c.sql_type("redshift")}{"" if c.nullable else " NOT NULL"}'
                        for c in table.columns)
    rows = stage.copy(stage.table(columns), PARQUET, parquet_bytes(frame, table))
    assert rows == [tuple(full.values()), tuple(sparse.values())]


ACCEPTED = pa.table({
    "i": pa.array([-(2**63)], pa.int64()),
    "b": pa.array([False], pa.bool_()),
    "f": pa.array([1.25], pa.float64()),
    "s": pa.array(["ab"], pa.string()),
    "ls": pa.array(["cd"], pa.large_string()),
    "d": pa.array([date(2026, 1, 2)], pa.date32()),
    "ts_us": pa.array([datetime(2026, 1, 2, 3, 4, 5, 6)], pa.timestamp("us")),
    "ts_ms": pa.array([datetime(2026, 1, 2, 3, 4, 5)], pa.timestamp("ms")),
    "tz_ms": pa.array([datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)], pa.timestamp("ms", tz="UTC")),
    "tz_us": pa.array([datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
})


def test_parquet_types_that_fit_their_columns_load(stage: Stage) -> None:
    rows = stage.parquet("i BIGINT, b BOOLEAN, f DOUBLE PRECISION, s VARCHAR(2), ls VARCHAR(2), d DATE, "
                         "ts_us TIMESTAMP, ts_ms TIMESTAMP, tz_ms TIMESTAMPTZ, tz_us TIMESTAMPTZ", ACCEPTED)
    assert rows == [(-(2**63), False, 1.25, "ab", "cd", date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, 5, 6),
                     datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                     datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))]


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("column", "array"),
    [
        ("BIGINT", pa.array([1], pa.int32())),
        ("BIGINT", pa.array([1], pa.uint64())),
        ("BIGINT", pa.array(["1"], pa.string())),
        ("BOOLEAN", pa.array([1], pa.int64())),
        ("DOUBLE PRECISION", pa.array([1.5], pa.float32())),
        ("DOUBLE PRECISION", pa.array([1], pa.int64())),
        ("VARCHAR(8)", pa.array([b"x"], pa.binary())),
        ("VARCHAR(8)", pa.array([5], pa.int64())),
        ("DATE", pa.array([NOW], pa.timestamp("us", tz="UTC"))),
        ("TIMESTAMPTZ", pa.array([NOW.replace(tzinfo=None)], pa.timestamp("us"))),
        ("TIMESTAMPTZ", pa.array([NOW], pa.timestamp("ns", tz="UTC"))),
        ("TIMESTAMPTZ", pa.array([NOW.date()], pa.date32())),
        ("TIMESTAMP", pa.array([1], pa.int64())),
    ],
)
def test_parquet_type_that_does_not_fit_fails_the_copy(stage: Stage, column: str, array) -> None:
    expected = (r"Spectrum Scan Error: File 's3://.*' has an incompatible Parquet schema for column "
                rf"'s3://.*\.c'\. Column type: {re.escape(column)}, Parquet schema: ")
    with pytest.raises(sa.exc.DBAPIError, match=expected):
        stage.parquet(f"c {column}", pa.table({"c": array}))


def test_parquet_int96_timestamps_are_refused_as_unmodelled(stage: Stage) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"t": pa.array([NOW], pa.timestamp("us", tz="UTC"))}), buf,
                   use_deprecated_int96_timestamps=True)
    with pytest.raises(sa.exc.DBAPIError, match="does not model Parquet INT96"):
        stage.copy(stage.table("t TIMESTAMPTZ"), PARQUET, buf.getvalue())


# --- VARCHAR byte limits, both formats ---------------------------------------------------------------------


def test_varchar_counts_bytes_in_parquet(stage: Stage) -> None:
    assert stage.parquet("s VARCHAR(8)", pa.table({"s": ["😀😀", None]})) == [("😀😀",), (None,)]
    # Three emoji are 3 characters, which PostgreSQL's VARCHAR(8) takes, but 12 bytes.
    error = stage.refused(lambda: stage.parquet("s VARCHAR(8)", pa.table({"s": ["ok", "😀😀😀"]})),
                          "String length exceeds DDL length (12 > 8 bytes)")
    assert error[1:] == ("s", 2, 1204)


def test_varchar_counts_bytes_in_csv(stage: Stage) -> None:
    assert stage.csv("s VARCHAR(8)", "😀😀".encode()) == [("😀😀",)]
    error = stage.refused(lambda: stage.csv("s VARCHAR(8)", b"ok", '"😀😀😀"'.encode()),
                          "String length exceeds DDL length (12 > 8 bytes)")
    assert error[1:] == ("s", 3, 1204)  # the header is line 1


def _invalid_utf8(fmt: str, stage: Stage, value: bytes, options: str) -> list[tuple]:
    if fmt == "csv":
        return stage.csv("s VARCHAR(4)", value, options=options)
    strings = pa.array([value], pa.binary()).view(pa.string())  # not validated: the file gets invalid UTF-8
    return stage.parquet("s VARCHAR(4)", pa.table({"s": strings}), options=options)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_acceptinvchars_replaces_each_invalid_byte_and_the_result_must_fit(stage: Stage, fmt: str) -> None:
    plain = CSV if fmt == "csv" else PARQUET
    accept = plain.replace("MANIFEST", "MANIFEST ACCEPTINVCHARS AS '?'")
    stage.refused(lambda: _invalid_utf8(fmt, stage, b"ab\xff\xfe", plain), "invalid or unsupported UTF8")
    assert _invalid_utf8(fmt, stage, b"ab\xff\xfe", accept) == [("ab??",)]
    error = stage.refused(lambda: _invalid_utf8(fmt, stage, b"abc\xff\xfe", accept),
                          "String length exceeds DDL length (5 > 4 bytes)")
    assert error[1] == "s"


def test_varchar_wider_than_65535_bytes_is_refused(stage: Stage) -> None:
    with pytest.raises(sa.exc.DBAPIError, match="length for type varchar cannot exceed 65535"):
        stage.table("s VARCHAR(65536)")
    table = stage.table("s VARCHAR(65535), d VARCHAR(10) DEFAULT 'VARCHAR(70000)'")  # a literal is not DDL
    with pytest.raises(sa.exc.DBAPIError, match="length for type varchar cannot exceed 65535"):
        stage.autocommit(f"ALTER TABLE {table} ADD COLUMN t CHARACTER VARYING (70000)")
    assert stage.parquet("s VARCHAR(65535)", pa.table({"s": ["é" * 32767]})) == [("é" * 32767,)]
    raw = stage.engine.raw_connection()  # its cursors bypass the double: PostgreSQL takes VARCHAR(70000)
    try:
        with raw.cursor() as cur:
            cur.execute(f'CREATE TABLE "{stage.schema}".wide (s VARCHAR(70000))')
        raw.commit()
    finally:
        raw.close()
    with pytest.raises(sa.exc.DBAPIError, match="Redshift's VARCHAR holds at most 65535 bytes"):
        stage.copy(f'"{stage.schema}".wide', PARQUET, parquet_file(pa.table({"s": ["x"]})))


# --- CSV nulls -------------------------------------------------------------------------------------------

DEFAULT_NULL = "FORMAT AS CSV MANIFEST"


def test_default_null_string_loads_null_unquoted_and_is_refused_quoted(stage: Stage) -> None:
    rows = stage.csv("s VARCHAR(8), n BIGINT", b"\\N,\\N", b"x,1", b"\\Nx,2", options=DEFAULT_NULL)
    assert rows == [(None, None), ("x", 1), ("\\Nx", 2)]
    for line in (b'"\\N",1', b'x,"\\N"'):
        error = stage.refused(
            lambda line=line: stage.csv("s VARCHAR(8), n BIGINT", line, options=DEFAULT_NULL),
            f'{UNDOCUMENTED}: the quoted field "\\N" equals the NULL AS string',
        )
        assert error[3] == 9001


def test_null_as_nul_matches_only_a_field_of_nul(stage: Stage) -> None:
    rows = stage.csv("s VARCHAR(8), n BIGINT", b"\x00,\x00", b"\\N,3")  # production options: NULL AS '\0'
    assert rows == [(None, None), ("\\N", 3)]  # with NULL AS '\0', \N is ordinary text
    stage.refused(lambda: stage.csv("s VARCHAR(8)", b'"\x00"'),
                  f'{UNDOCUMENTED}: the quoted field "\\0" equals the NULL AS string')
    stage.refused(lambda: stage.csv("s VARCHAR(8)", b"a\x00"),
                  f"{UNDOCUMENTED}: a NUL (0x00) inside a longer field")
    error = stage.refused(lambda: stage.csv("s VARCHAR(8), n BIGINT", b"\x00,1", options=DEFAULT_NULL),
                          "NUL (0x00) found: COPY treats it as an end of record")
    assert error[1:3] == ("s", 1)


def test_emptyasnull_empty_and_quoted_empty_fields(stage: Stage) -> None:
    assert stage.csv("s VARCHAR(8), n BIGINT", b",", b"x,") == [(None, None), ("x", None)]
    assert stage.csv("s VARCHAR(8), n BIGINT", b",", b'"",', options=DEFAULT_NULL) == [("", None), ("", None)]
    error = stage.refused(lambda: stage.csv("s VARCHAR(8), n BIGINT", b"x,1", b'"",2'),
                          'reading a quoted empty field "" under EMPTYASNULL is undocumented in Redshift')
    assert error[1:] == ("s", 3, 9001)
    stage.refused(lambda: stage.csv("s VARCHAR(8), n BIGINT", b'x,""', options=DEFAULT_NULL),
                  f'{UNDOCUMENTED}: the quoted field "" in a bigint column')


# --- identifiers -----------------------------------------------------------------------------------------


def test_fold_identifiers_lowers_only_quoted_identifiers() -> None:
    sql = ('SELECT "MixedCase"."Col", Other, "a""B" FROM "Sch"."Tbl" WHERE a = \'Keep "This" and \'\'Q\'\'\' '
           'AND b = E\'it\\\'s "X"\' AND c = $t$ "Dollar" $t$ AND d = %(Param)s AND "Ärger" = $1 '
           '-- "Comment"\n/* "Block" */ AND "Z" = 1')
    assert fold_identifiers(sql) == (
        'SELECT "mixedcase"."col", Other, "a""b" FROM "sch"."tbl" WHERE a = \'Keep "This" and \'\'Q\'\'\' '
        'AND b = E\'it\\\'s "X"\' AND c = $t$ "Dollar" $t$ AND d = %(Param)s AND "Ärger" = $1 '
        '-- "Comment"\n/* "Block" */ AND "z" = 1')


def test_folding_makes_a_mixed_case_schema_name_visible(stage: Stage, pg_server: str,
                                                        moto_server: str) -> None:
    typed = f"Dbl_Mixed_{uuid.uuid4().hex[:8]}"
    lookup = "SELECT schema_name FROM information_schema.schemata WHERE schema_name = %(s)s"
    stage.autocommit(f'CREATE SCHEMA "{typed}"')
    stage.autocommit(f'CREATE TABLE "{typed}"."Users" ("UserId" BIGINT)')
    stage.autocommit(f'INSERT INTO "{typed}".users ("USERID") VALUES (1)')  # one table, one column: folded
    with stage.engine.connect() as conn:
        assert conn.exec_driver_sql(lookup, {"s": typed}).all() == []  # the bound value keeps its case
        assert conn.exec_driver_sql(lookup, {"s": typed.lower()}).all() == [(typed.lower(),)]
        assert conn.exec_driver_sql(f'SELECT "UserId" FROM "{typed}"."USERS"').all() == [(1,)]
    stage.autocommit(f'DROP SCHEMA "{typed}" CASCADE')

    engine = _engine(pg_server)  # the same statements without folding: PostgreSQL keeps the case
    plain = RedshiftCopyDouble(engine, moto_server, fold_identifiers=False)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{typed}"')
            assert conn.exec_driver_sql(lookup, {"s": typed}).all() == [(typed,)]
            conn.exec_driver_sql(f'DROP SCHEMA "{typed}"')
    finally:
        plain.remove()
        engine.dispose()


# --- ALTER TABLE ... ALTER COLUMN ... TYPE -----------------------------------------------------------------


def test_alter_column_type_cannot_run_inside_a_transaction_block(stage: Stage) -> None:
    table = stage.table("s VARCHAR(8)")
    alter = f"ALTER TABLE {table} ALTER COLUMN s TYPE VARCHAR(16)"
    refused = "ALTER TABLE ALTER COLUMN cannot run inside a transaction block"
    with pytest.raises(sa.exc.DBAPIError, match=refused), stage.engine.begin() as conn:
        conn.exec_driver_sql(alter)
    assert stage.column_type(table, "s") == "character varying(8)"
    stage.autocommit(alter)
    assert stage.column_type(table, "s") == "character varying(16)"


@pytest.mark.parametrize(
    ("columns", "clause", "message"),
    [
        ("n BIGINT", "ALTER COLUMN n TYPE VARCHAR(20)", '"n" is bigint'),
        ("s VARCHAR(8)", "ALTER COLUMN s TYPE TEXT", "only changes the size of a VARCHAR"),
        ("s VARCHAR(8)", "ALTER COLUMN s TYPE VARCHAR(16) USING s", "only changes the size of a VARCHAR"),
        ("s VARCHAR(8)", "ALTER COLUMN s TYPE VARCHAR(16), ADD COLUMN t BIGINT", "one clause per statement"),
        ("s VARCHAR(8) PRIMARY KEY", "ALTER COLUMN s TYPE VARCHAR(16)", "PRIMARY KEY, UNIQUE or FOREIGN KEY"),
        ("s VARCHAR(8) UNIQUE", "ALTER COLUMN s TYPE VARCHAR(16)", "PRIMARY KEY, UNIQUE or FOREIGN KEY"),
        ("s VARCHAR(8) DEFAULT 'x'", "ALTER COLUMN s TYPE VARCHAR(16)", "it has a default value"),
    ],
)
def test_alter_column_type_only_resizes_a_plain_varchar(stage: Stage, columns: str, clause: str,
                                                        message: str) -> None:
    table = stage.table(columns)
    with pytest.raises(sa.exc.DBAPIError, match=message):
        stage.autocommit(f"ALTER TABLE {table} {clause}")


def test_alter_column_type_cannot_shrink_below_the_longest_value_in_bytes(stage: Stage) -> None:
    table = stage.table("s VARCHAR(16)")
    stage.autocommit(f"INSERT INTO {table} VALUES ('😀😀')")  # 2 characters, 8 bytes
    too_small = "target column size should be greater or equal to current maximum column size"
    with pytest.raises(sa.exc.DBAPIError, match=too_small):
        stage.autocommit(f"ALTER TABLE {table} ALTER COLUMN s TYPE VARCHAR(7)")
    stage.autocommit(f'ALTER TABLE {table} ALTER COLUMN "S" TYPE VARCHAR(8)')  # a size that fits is allowed
    assert stage.column_type(table, "s") == "character varying(8)"
