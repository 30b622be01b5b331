"""A test double for Redshift's `COPY ... FROM 's3://...'` statement, and only that statement.

No Redshift can run here (FIELD_NOTES), so the Redshift warehouse is tested against a real PostgreSQL
server: every statement it sends runs there as is, except COPY from S3, which PostgreSQL cannot run.
`RedshiftCopyDouble` intercepts that one statement on the engine (`before_cursor_execute`), resolves
the manifest in moto's S3 server, applies Redshift's COPY rules, inserts the rows into the staging table
on the same connection and transaction, and replaces the statement with one that makes
`pg_last_copy_count()` answer like Redshift. A load error is written to a `sys_load_error_detail` table
on its own connection (Redshift's system views survive the rollback) and the statement is replaced by
one that fails with Redshift's message, so the driver raises a real error.

Redshift rules modelled (from its COPY documentation): manifest entries are exact keys, a missing
mandatory one fails the statement, Parquet entries need `meta.content_length`; CSV quotes with `"`, doubles inner quotes and allows newlines inside
quotes; IGNOREHEADER skips lines; GZIP; an empty unquoted field is NULL for non-character types and
for VARCHAR only with EMPTYASNULL, `""` is an empty string; VARCHAR(n) holds n **bytes**; invalid UTF-8
fails the load unless ACCEPTINVCHARS replaces each invalid byte; NULL into NOT NULL fails; TIMEFORMAT
'auto' reads ISO-8601, without it only `YYYY-MM-DD HH:MI:SS`; Parquet maps columns by position and
count; MAXERROR is 0, so the first bad row fails the load. Other options are refused as unmodelled.
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import boto3
import orjson
import pyarrow.parquet as pq
import sqlalchemy as sa
from psycopg2.extras import execute_values

COPY_FROM_S3 = re.compile(r"^\s*COPY\s+(?P<table>\S+)\s+FROM\s+'(?P<source>s3://[^']*)'(?P<rest>.*)$", re.DOTALL | re.IGNORECASE)
TOKENS = re.compile(r"'(?:[^']|'')*'|\S+")
FLAGS = {"GZIP", "MANIFEST", "EMPTYASNULL", "BLANKSASNULL", "TRUNCATECOLUMNS"}
WITH_ARGUMENT = {"CREDENTIALS", "IAM_ROLE", "FORMAT", "IGNOREHEADER", "TIMEFORMAT", "DATEFORMAT", "STATUPDATE"}
CSV_ONLY = {"GZIP", "IGNOREHEADER", "TIMEFORMAT", "DATEFORMAT", "EMPTYASNULL", "BLANKSASNULL", "TRUNCATECOLUMNS"}
TRUE = {"t", "true", "1", "y", "yes"}
FALSE = {"f", "false", "0", "n", "no"}
SUPPORT_SQL = [
    """CREATE TABLE IF NOT EXISTS public.sys_load_error_detail (
        query_id bigserial, session_id integer, start_time timestamp DEFAULT now(),
        file_name char(256), line_number bigint, column_name char(127), column_type char(10),
        column_length char(10), position integer, error_code integer, error_message char(512))""",
    """CREATE OR REPLACE FUNCTION public.pg_last_copy_count() RETURNS bigint LANGUAGE sql STABLE AS
       $$ SELECT COALESCE(NULLIF(current_setting('x_pipeline_double.last_copy_count', true), ''), '0')::bigint $$""",
]


@dataclass
class CopyRequest:
    table: str
    source: str
    options: dict[str, str | bool] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        return name in self.options


@dataclass
class StagingColumn:
    name: str
    type: str  # PostgreSQL's format_type, e.g. "character varying(4000)", "bigint"
    not_null: bool

    @property
    def varchar_bytes(self) -> int | None:
        m = re.fullmatch(r"character varying\((\d+)\)", self.type)
        return int(m.group(1)) if m else None


class StatementError(Exception):
    """COPY fails as a whole (no row in sys_load_error_detail)."""


class LoadError(Exception):
    def __init__(self, code: int, message: str, line: int = 0, column: StagingColumn | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.line, self.column = code, message, line, column
        self.file = ""


def parse_copy(statement: str) -> CopyRequest | None:
    m = COPY_FROM_S3.match(statement)
    if not m:
        return None
    request = CopyRequest(m.group("table"), m.group("source"))
    tokens = TOKENS.findall(m.group("rest"))
    i = 0
    while i < len(tokens):
        word = tokens[i].upper()
        i += 1
        if word == "WITH":
            continue
        if i < len(tokens) and tokens[i].upper() == "AS":
            i += 1
        if word in FLAGS:
            request.options[word] = True
        elif word == "ACCEPTINVCHARS":
            char = "?"
            if i < len(tokens) and tokens[i].startswith("'"):
                char, i = tokens[i][1:-1].replace("''", "'"), i + 1
            request.options[word] = char
        elif word in WITH_ARGUMENT and i < len(tokens):
            value = tokens[i]
            request.options[word] = value[1:-1].replace("''", "'") if value.startswith("'") else value.upper()
            i += 1
        else:
            raise StatementError(f"the COPY double does not model the option {word}")
    return request


def csv_records(text: str, skip_lines: int):
    """Yield (line_number, [(value, quoted), ...]) per record, RFC 4180 as Redshift's CSV reads it."""
    pos, line = 0, 1
    for _ in range(skip_lines):
        nl = text.find("\n", pos)
        pos, line = (len(text), line) if nl < 0 else (nl + 1, line + 1)
    n = len(text)
    while pos < n:
        start_line, fields, value, quoted = line, [], [], False
        while True:
            if pos < n and text[pos] == '"' and not value:
                quoted, pos = True, pos + 1
                while True:
                    if pos >= n:
                        raise LoadError(1221, "Unterminated quoted field", start_line)
                    ch = text[pos]
                    if ch == '"':
                        if pos + 1 < n and text[pos + 1] == '"':
                            value.append('"')
                            pos += 2
                            continue
                        pos += 1
                        break
                    if ch == "\n":
                        line += 1
                    value.append(ch)
                    pos += 1
            while pos < n and text[pos] not in ",\n":
                value.append(text[pos])
                pos += 1
            fields.append(("".join(value).rstrip("\r") if not quoted else "".join(value), quoted))
            value, quoted = [], False
            if pos >= n or text[pos] == "\n":
                pos += 1
                line += 1
                break
            pos += 1  # the comma
        yield start_line, fields


class RedshiftCopyDouble:
    """Test double (see the module docstring): executes COPY-from-S3 statements sent on `engine`."""

    def __init__(self, engine: sa.Engine, s3_endpoint: str) -> None:
        self.engine = engine
        self.s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                               aws_access_key_id="testing-key-id", aws_secret_access_key="testing-secret-value")
        self.statements: list[str] = []
        with engine.begin() as conn:
            for sql in SUPPORT_SQL:
                conn.exec_driver_sql(sql)
        sa.event.listen(engine, "before_cursor_execute", self._intercept, retval=True)

    def remove(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._intercept)

    def _intercept(self, conn, cursor, statement, parameters, context, executemany):
        try:
            request = parse_copy(statement)
        except StatementError as exc:
            return _failing(str(exc)), parameters
        if request is None:
            return statement, parameters
        self.statements.append(statement)
        try:
            columns = self._columns(cursor, request.table)
            rows = self._load(request, columns)
        except StatementError as exc:
            return _failing(str(exc)), parameters
        except LoadError as err:
            cursor.execute("SELECT pg_backend_pid()")
            self._record(cursor.fetchone()[0], err)
            table = request.table.strip('"')
            return _failing(f"Load into table '{table}' failed. Check 'sys_load_error_detail' system table "
                            "for details."), parameters
        if rows:
            execute_values(cursor, f"INSERT INTO {request.table} VALUES %s", rows, page_size=1000)
        return f"SELECT set_config('x_pipeline_double.last_copy_count', '{len(rows)}', false)", parameters

    def _columns(self, cursor, table: str) -> list[StagingColumn]:
        cursor.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        )
        columns = [StagingColumn(*row) for row in cursor.fetchall()]
        if not columns:
            raise StatementError(f'relation "{table}" does not exist')
        return columns

    def _record(self, session_id: int, err: LoadError) -> None:
        column = err.column
        with self.engine.connect() as side, side.begin():  # its own transaction, like a system view
            side.execute(
                sa.text(
                    "INSERT INTO public.sys_load_error_detail (session_id, file_name, line_number, column_name,"
                    " column_type, column_length, position, error_code, error_message) VALUES (:s, :f, :l, :c,"
                    " :t, :n, 0, :code, :m)"
                ),
                {"s": session_id, "f": err.file, "l": err.line, "c": column.name if column else "",
                 "t": ("varchar" if column.varchar_bytes else column.type[:10]) if column else "",
                 "n": str(column.varchar_bytes or "") if column else "", "code": err.code, "m": err.message[:512]},
            )

    def _get(self, url: str) -> bytes:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            raise StatementError(f"S3ServiceException: The specified key does not exist: {url}") from None

    def _load(self, request: CopyRequest, columns: list[StagingColumn]) -> list[tuple]:
        opts = request.options
        if "CREDENTIALS" not in opts and "IAM_ROLE" not in opts:
            raise StatementError("Missing credentials: COPY needs IAM_ROLE or CREDENTIALS")
        if not request.flag("MANIFEST"):
            raise StatementError("the COPY double models manifest loads only")
        fmt = opts.get("FORMAT", "TEXT")
        if fmt == "PARQUET" and (bad := sorted(CSV_ONLY & set(opts))):
            raise StatementError(f"{', '.join(bad)} argument is not supported for PARQUET based COPY")
        if fmt not in ("CSV", "PARQUET"):
            raise StatementError(f"the COPY double does not model FORMAT {fmt}")
        manifest = orjson.loads(self._get(request.source))
        rows: list[tuple] = []
        for entry in manifest["entries"]:
            if fmt == "PARQUET" and "content_length" not in entry.get("meta", {}):
                raise StatementError(f"Manifest entry {entry['url']} needs meta.content_length for PARQUET")
            try:
                data = self._get(entry["url"])
            except StatementError:
                if entry.get("mandatory"):
                    raise StatementError(f"Manifest file is invalid: mandatory file {entry['url']} not found") from None
                continue
            try:
                rows += self._parquet(data, columns) if fmt == "PARQUET" else self._csv(data, columns, request)
            except LoadError as err:
                err.file = entry["url"]
                raise
        return rows

    def _parquet(self, data: bytes, columns: list[StagingColumn]) -> list[tuple]:
        table = pq.read_table(io.BytesIO(data))
        if table.num_columns != len(columns):
            raise StatementError(
                f"Spectrum Scan Error: the file has {table.num_columns} columns, the table {len(columns)}"
            )
        rows = []
        for n, record in enumerate(table.to_pylist(), 1):
            values = list(record.values())
            for col, value in zip(columns, values, strict=True):
                _check(col, value, n)
            rows.append(tuple(values))
        return rows

    def _csv(self, data: bytes, columns: list[StagingColumn], request: CopyRequest) -> list[tuple]:
        if request.flag("GZIP"):
            data = gzip.decompress(data)
        text = data.decode("utf-8", "surrogateescape")  # invalid bytes survive as lone surrogates
        skip = int(request.options.get("IGNOREHEADER", 0))
        rows = []
        for line, fields in csv_records(text, skip):
            if len(fields) < len(columns):
                raise LoadError(1214, "Delimiter not found", line, columns[len(fields)])
            if len(fields) > len(columns):
                raise LoadError(1216, "Extra column(s) found", line)
            rows.append(tuple(_convert(col, value, quoted, request, line) for col, (value, quoted)
                              in zip(columns, fields, strict=True)))
        return rows


def _failing(message: str) -> str:
    text = message.replace("'", "''")
    return f"DO $$ BEGIN RAISE EXCEPTION '{text}' USING ERRCODE = 'XX000'; END $$"


def _check(col: StagingColumn, value: Any, line: int) -> None:
    if value is None and col.not_null:
        raise LoadError(1213, "Missing data for not-null field", line, col)
    limit = col.varchar_bytes
    if limit is not None and value is not None and len(value.encode("utf-8")) > limit:
        raise LoadError(1204, f"String length exceeds DDL length ({len(value.encode())} > {limit} bytes)", line, col)


def _convert(col: StagingColumn, raw: str, quoted: bool, request: CopyRequest, line: int) -> Any:
    opts = request.options
    value: Any
    if col.varchar_bytes is not None:
        if any("\udc80" <= ch <= "\udcff" for ch in raw):
            if "ACCEPTINVCHARS" not in opts:
                bad = next(ch for ch in raw if "\udc80" <= ch <= "\udcff")
                raise LoadError(1220, "String contains invalid or unsupported UTF8 codepoints. "
                                f"Bad UTF8 hex sequence: {ord(bad) - 0xDC00:02x}", line, col)
            raw = "".join(str(opts["ACCEPTINVCHARS"]) if "\udc80" <= ch <= "\udcff" else ch for ch in raw)
        empty = raw == "" and not quoted
        blank = request.flag("BLANKSASNULL") and not quoted and raw.strip() == "" and raw != ""
        value = None if ((empty and request.flag("EMPTYASNULL")) or blank) else raw
        if value is not None and request.flag("TRUNCATECOLUMNS"):
            value = value.encode("utf-8")[: col.varchar_bytes].decode("utf-8", "ignore")
    elif raw.strip() == "":
        value = None
    elif any("\udc80" <= ch <= "\udcff" for ch in raw):
        raise LoadError(1220, "String contains invalid or unsupported UTF8 codepoints", line, col)
    else:
        value = _typed(col, raw.strip(), opts, line)
    _check(col, value, line)
    return value


def _typed(col: StagingColumn, raw: str, opts: dict, line: int) -> Any:
    kind = col.type
    try:
        if kind == "bigint":
            if not re.fullmatch(r"[+-]?\d+", raw) or not -(2**63) <= int(raw) < 2**63:
                raise ValueError
            return int(raw)
        if kind == "boolean":
            if raw.lower() in TRUE:
                return True
            if raw.lower() in FALSE:
                return False
            raise ValueError
        if kind == "double precision":
            return float(raw)
        if kind == "date":
            if opts.get("DATEFORMAT") != "auto" and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                raise ValueError
            return date.fromisoformat(raw[:10])
        if kind.startswith("timestamp"):
            if opts.get("TIMEFORMAT") == "auto":
                ts = datetime.fromisoformat(raw)  # ISO-8601, "Z" included
            else:
                ts = datetime.strptime(raw, "%Y-%m-%d %H:%M:%S")
            return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    except ValueError:
        raise LoadError(1207 if kind == "bigint" else 1206, f"Invalid {kind} value '{raw}'", line, col) from None
    raise StatementError(f"the COPY double does not model column type {kind}")
