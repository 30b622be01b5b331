"""A test double for Amazon Redshift on a real PostgreSQL server: Redshift's `COPY ... FROM 's3://...'`, and
the few Redshift rules on other statements that PostgreSQL would not enforce.

No Redshift can run here (FIELD_NOTES), so the Redshift warehouse is tested against a real PostgreSQL
server. `RedshiftCopyDouble` is installed on the SQLAlchemy engine (`before_cursor_execute`) and sees every
statement before PostgreSQL does. COPY from S3, which PostgreSQL cannot run, is executed by the double: it
resolves the manifest in moto's S3 server, applies Redshift's COPY rules, inserts the rows into the staging
table on the same connection and transaction, and replaces the statement with one that makes
`pg_last_copy_count()` answer like Redshift. A load error is written to a `sys_load_error_detail` table on
its own connection (Redshift's system views survive the rollback) and the statement is replaced by one that
fails with Redshift's message, so the driver raises a real error. A statement Redshift refuses is replaced
the same way by one that fails.

Redshift rules modelled, each from the Amazon Redshift Database Developer Guide page named in brackets
(source: awsdocs/amazon-redshift-developer-guide, doc_source/<page>.md):

COPY, both formats
- [COPY from Amazon S3 / MANIFEST] manifest entries are exact keys; a missing mandatory entry fails the
  statement; Parquet entries need `meta.content_length`; COPY needs IAM_ROLE or CREDENTIALS.
- [Character types] VARCHAR(n) holds n **bytes**, checked for every value of both formats after
  ACCEPTINVCHARS replacement; VARCHAR is at most 65535 bytes (a wider staging column is refused).
- [Data conversion parameters] ACCEPTINVCHARS replaces each invalid UTF-8 byte with its character (equal
  length), VARCHAR only; without it invalid UTF-8 fails the load. NULL into NOT NULL fails the load.
- MAXERROR is 0: the first bad row fails the load. Options the double does not model are refused.

CSV
- [Data format parameters] quotes are `"`, inner quotes doubled, newlines allowed inside quotes.
- [Data conversion parameters] IGNOREHEADER skips lines; GZIP; TIMEFORMAT 'auto' reads ISO-8601, without it
  only `YYYY-MM-DD HH:MI:SS`; DATEFORMAT likewise.
- [Data conversion parameters: NULL AS] an unquoted field equal to the null string loads NULL, in any column
  type; the default null string is `\\N`; `NULL AS '\\0'` (or `'\\000'`) matches a field that consists only
  of NUL (U+0000), and then `\\N` is ordinary text. [Preparing your input data] a NUL anywhere else fails
  the load when NULL AS does not match it.
- [Data conversion parameters: EMPTYASNULL, BLANKSASNULL] an empty unquoted CHAR/VARCHAR field is NULL with
  EMPTYASNULL and an empty string without it; an empty or blank unquoted field of any other type is NULL.
- Refused because Redshift's behaviour is undocumented (a LoadError with error_code 9001, not a Redshift
  code, so the file, line and column reach the caller): a quoted field equal to the null string (`"\\N"`, a
  quoted NUL); a quoted empty field `""` in a VARCHAR column under EMPTYASNULL (NULL or empty string?); a
  quoted empty or blank field in a non-character column; a NUL inside a longer field under NULL AS '\\0'
  (Redshift keeps it in the value, PostgreSQL cannot store it). A writer must not produce these.

Parquet
- [COPY from columnar data formats] columns map by position; the counts must match; only ACCEPTINVCHARS,
  MANIFEST, STATUPDATE and the authorization are accepted (GZIP, IGNOREHEADER, NULL AS... are refused with
  "<X> argument is not supported for PARQUET based COPY").
- Column types: each file column's physical and logical type must fit the staging column (the
  knowledge-center article "How do I resolve data incompatibility errors in Redshift Spectrum?" gives the
  error's shape: "has an incompatible Parquet schema for column ..."). No Redshift page tabulates the pairs,
  so the double accepts only: BIGINT <- INT64 (no logical type, or INT(64, signed)); BOOLEAN <- BOOLEAN;
  DOUBLE PRECISION <- DOUBLE; VARCHAR <- BYTE_ARRAY STRING (UTF8); DATE <- INT32 DATE; TIMESTAMP <- INT64
  TIMESTAMP(MILLIS|MICROS); TIMESTAMPTZ <- INT64 TIMESTAMP(MILLIS|MICROS, isAdjustedToUTC=true). The docs
  are silent on Parquet into TIMESTAMPTZ (FIELD_NOTES): accepting UTC-adjusted timestamps is an assumption
  (dlt relies on it on real Redshift). Anything else fails the statement ("Spectrum Scan Error ..."); INT96,
  NANOS and nested columns are refused as unmodelled.

Other statements
- [Names and identifiers] "ASCII letters in standard and delimited identifiers are case-insensitive and are
  folded to lowercase": with `fold_identifiers` (default on) the ASCII letters of every double-quoted
  identifier are lower-cased before PostgreSQL sees the statement (unquoted ones PostgreSQL folds itself).
  String literals, comments and bound parameter values are untouched, so `information_schema` answers with
  the folded name while a bound value keeps the case it was typed with, as on Redshift.
- [ALTER TABLE: ALTER COLUMN column_name TYPE] with `alter_column_rules` (default on): it only changes the
  size of a VARCHAR column, one clause per statement; it can't run inside a transaction block (the psycopg2
  connection must be in autocommit mode and idle); it can't decrease the size below the longest existing
  value in bytes; it can't alter a column with a default value or in a PRIMARY KEY, UNIQUE or FOREIGN KEY
  constraint.
- [Character types] CREATE/ALTER TABLE with a VARCHAR wider than 65535 bytes is refused.

Not modelled: COPY from a key prefix without MANIFEST, formats other than CSV and Parquet, other options
(DELIMITER, QUOTE, ESCAPE, FILLRECORD, TRIMBLANKS, MAXERROR > 0, ...: refused); white space between a
delimiter and a quote is ignored by Redshift but kept by the double; Redshift truncates an over-long value
whose excess is all blanks [Character types], the double fails it; timestamps in TIMEFORMAT 'auto' are read
with Python's ISO-8601 parser, not Redshift's list of formats; Parquet DECIMAL, INT32 integers, REAL, binary
and column types other than the seven above; ALTER COLUMN TYPE's compression-encoding limits; VARCHAR(MAX)
syntax; `enable_case_sensitive_identifier`; identifiers longer than 127 bytes; STL_LOAD_ERRORS. Error texts
follow Redshift's where known, but are not byte-identical.
"""

from __future__ import annotations

import gzip
import io
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import boto3
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from psycopg2.extras import execute_values

COPY_FROM_S3 = re.compile(
    r"^\s*COPY\s+(?P<table>\S+)\s+FROM\s+'(?P<source>s3://[^']*)'(?P<rest>.*)$", re.DOTALL | re.IGNORECASE
)
TOKENS = re.compile(r"'(?:[^']|'')*'|\S+")
FLAGS = {"GZIP", "MANIFEST", "EMPTYASNULL", "BLANKSASNULL", "TRUNCATECOLUMNS"}
WITH_ARGUMENT = {"CREDENTIALS", "IAM_ROLE", "FORMAT", "IGNOREHEADER", "TIMEFORMAT", "DATEFORMAT",
                 "STATUPDATE"}
# [COPY from columnar data formats] lists the only parameters a Parquet COPY accepts; these are modelled ones.
CSV_ONLY = {"GZIP", "IGNOREHEADER", "TIMEFORMAT", "DATEFORMAT", "EMPTYASNULL", "BLANKSASNULL",
            "TRUNCATECOLUMNS", "NULL"}
STATUPDATE_VALUES = {"ON", "OFF", "TRUE", "FALSE"}
TRUE = {"t", "true", "1", "y", "yes"}
FALSE = {"f", "false", "0", "n", "no"}
# [Character types] "The MAX setting defines the width of the column as ... 65535 bytes for VARCHAR".
VARCHAR_MAX_BYTES = 65535
# [Data conversion parameters: NULL AS] "The default null_string is '\N'"; '\0' and '\000' match a field of
# only NUL.
DEFAULT_NULL_AS = "\\N"
NUL_NULL_AS = ("\\0", "\\000")
# sys_load_error_detail.error_code of a row the double refuses because Redshift's behaviour is undocumented.
UNDOCUMENTED = 9001
INVALID_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape
SUPPORT_SQL = [
    """CREATE TABLE IF NOT EXISTS public.sys_load_error_detail (
        query_id bigserial, session_id integer, start_time timestamp DEFAULT now(),
        file_name char(256), line_number bigint, column_name char(127), column_type char(10),
        column_length char(10), position integer, error_code integer, error_message char(512))""",
    """CREATE OR REPLACE FUNCTION public.pg_last_copy_count() RETURNS bigint LANGUAGE sql STABLE AS
       $$ SELECT COALESCE(NULLIF(current_setting('x_pipeline_double.last_copy_count', true), ''), '0')::bigint
       $$""",
]

# SQL text as PostgreSQL's lexer splits it: string literals, quoted identifiers, comments, the rest.
SQL_SPECIAL = re.compile(r"['\"$]|--|/\*")
DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
IDENT = r'(?:"(?:[^"]|"")*"|[^\s."(),;]+)'
DDL = re.compile(r"^\s*(?:CREATE|ALTER)\b", re.IGNORECASE)
VARCHAR_TYPE = re.compile(r"\b(?:N?VARCHAR|CHARACTER\s+VARYING)\s*\(\s*(\d+)\s*\)", re.IGNORECASE)
ALTER_TABLE = re.compile(
    rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<table>{IDENT}(?:\s*\.\s*{IDENT})*)\s+"
    r"(?P<rest>.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
TYPE_CLAUSE = re.compile(rf"\bALTER\s+(?:COLUMN\s+)?{IDENT}\s+(?:SET\s+DATA\s+)?TYPE\b", re.IGNORECASE)
ONE_TYPE_CLAUSE = re.compile(
    rf"ALTER\s+(?:COLUMN\s+)?(?P<column>{IDENT})\s+(?:SET\s+DATA\s+)?TYPE\s+(?P<type>.+)",
    re.IGNORECASE | re.DOTALL,
)
NEW_VARCHAR = re.compile(r"(?:N?VARCHAR|CHARACTER\s+VARYING)\s*\(\s*(?P<size>\d+|MAX)\s*\)", re.IGNORECASE)


@dataclass
class CopyRequest:
    table: str
    source: str
    options: dict[str, str | bool] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        return name in self.options

    @property
    def null_string(self) -> str:
        """The field text that loads NULL: NULL AS's string, `\\N` by default, NUL for '\\0' or '\\000'."""
        text = str(self.options.get("NULL", DEFAULT_NULL_AS))
        return "\0" if text in NUL_NULL_AS else text


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
        elif word == "NULL":  # [Data conversion parameters] NULL AS 'null_string', as written ('\0': 2 chars)
            if i >= len(tokens) or not tokens[i].startswith("'"):
                raise StatementError("NULL AS needs a quoted null_string")
            request.options[word], i = tokens[i][1:-1].replace("''", "'"), i + 1
        elif word in WITH_ARGUMENT and i < len(tokens):
            value = tokens[i]
            request.options[word] = value[1:-1].replace("''", "'") if value.startswith("'") else value.upper()
            i += 1
        else:
            raise StatementError(f"the COPY double does not model the option {word}")
    return request


def sql_segments(statement: str) -> list[tuple[str, str]]:
    """(kind, text) pieces of SQL text: "literal" ('...', E'...', $tag$...$tag$), "ident" ("..."), "comment"
    (-- and /* */), "code" (the rest). Enough of PostgreSQL's lexer to rewrite identifiers and read DDL."""
    out: list[tuple[str, str]] = []
    pos = start = 0
    n = len(statement)
    while (m := SQL_SPECIAL.search(statement, pos)) is not None:
        i, token = m.start(), m.group(0)
        prev = statement[i - 1] if i else ""
        if token == "'":
            before = statement[i - 2] if i > 1 else ""
            escaped = prev in ("e", "E") and not (before.isalnum() or before in ("_", "$"))
            j = i + 1
            while j < n:
                if (escaped and statement[j] == "\\") or statement.startswith("''", j):
                    j += 2  # an escaped character, or a doubled quote
                elif statement[j] == "'":
                    break
                else:
                    j += 1
            kind, end = "literal", min(j + 1, n)
        elif token == '"':
            j = i + 1
            while j < n and not (statement[j] == '"' and not statement.startswith('""', j)):
                j += 2 if statement.startswith('""', j) else 1
            kind, end = "ident", min(j + 1, n)
        elif token == "--":
            j = statement.find("\n", i)
            kind, end = "comment", n if j < 0 else j
        elif token == "/*":
            j = statement.find("*/", i + 2)
            kind, end = "comment", n if j < 0 else j + 2
        else:  # "$": a dollar-quoted string unless it is part of a word ($1, a$b) or not a tag
            tag = DOLLAR_TAG.match(statement, i)
            if tag is None or prev.isalnum() or prev in "_$":
                pos = i + 1
                continue
            j = statement.find(tag.group(0), tag.end())
            kind, end = "literal", n if j < 0 else j + len(tag.group(0))
        if i > start:
            out.append(("code", statement[start:i]))
        out.append((kind, statement[i:end]))
        pos = start = end
    if start < n:
        out.append(("code", statement[start:]))
    return out


def fold_identifiers(statement: str) -> str:
    """[Names and identifiers] the ASCII letters of every double-quoted identifier in lower case; string
    literals and comments as they are."""
    segments = sql_segments(statement)
    return "".join(text.translate(ASCII_LOWER) if kind == "ident" else text for kind, text in segments)


def sql_code(statement: str, identifiers: bool = True) -> str:
    """The statement with string literals emptied ('') and comments blanked, for reading its structure."""
    parts = {"literal": lambda t: "''", "comment": lambda t: " ", "code": lambda t: t,
             "ident": (lambda t: t) if identifiers else (lambda t: '""')}
    return "".join(parts[kind](text) for kind, text in sql_segments(statement))


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
    """Test double (see the module docstring): executes COPY-from-S3 statements sent on `engine`, folds quoted
    identifiers (`fold_identifiers`), enforces Redshift's ALTER COLUMN TYPE rules (`alter_column_rules`)."""

    def __init__(self, engine: sa.Engine, s3_endpoint: str, *, fold_identifiers: bool = True,
                 alter_column_rules: bool = True) -> None:
        self.engine = engine
        self.fold_identifiers = fold_identifiers
        self.alter_column_rules = alter_column_rules
        self.s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                               aws_access_key_id="testing-key-id",
                               aws_secret_access_key="testing-secret-value")
        self.statements: list[str] = []  # every COPY statement, as the caller sent it
        with engine.begin() as conn:
            for sql in SUPPORT_SQL:
                conn.exec_driver_sql(sql)
        self.listen()

    def listen(self) -> None:
        """Intercept statements on the engine (again, after `remove`: listeners run in the order added)."""
        sa.event.listen(self.engine, "before_cursor_execute", self._intercept, retval=True)

    def remove(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._intercept)

    def _intercept(self, conn, cursor, statement, parameters, context, executemany):
        sent = statement
        if self.fold_identifiers:
            statement = fold_identifiers(statement)
        refusal = _ddl_refusal(statement)
        if refusal is None and self.alter_column_rules:
            refusal = _alter_column_refusal(cursor, statement)
        if refusal is not None:
            return _failing(refusal, parameters), parameters
        try:
            request = parse_copy(statement)
        except StatementError as exc:
            return _failing(str(exc), parameters), parameters
        if request is None:
            return statement, parameters
        self.statements.append(sent)
        try:
            columns = self._columns(cursor, request.table)
            rows = self._load(request, columns)
        except StatementError as exc:
            return _failing(str(exc), parameters), parameters
        except LoadError as err:
            cursor.execute("SELECT pg_backend_pid()")
            self._record(cursor.fetchone()[0], err)
            table = request.table.strip('"')
            return _failing(f"Load into table '{table}' failed. Check 'sys_load_error_detail' system table "
                            "for details.", parameters), parameters
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
        for col in columns:
            if (col.varchar_bytes or 0) > VARCHAR_MAX_BYTES:  # made outside the double; Redshift has none
                raise StatementError(f"column {col.name} is {col.type}: Redshift's VARCHAR holds at most "
                                     f"{VARCHAR_MAX_BYTES} bytes")
        return columns

    def _record(self, session_id: int, err: LoadError) -> None:
        column = err.column
        with self.engine.connect() as side, side.begin():  # its own transaction, like a system view
            side.execute(
                sa.text(
                    "INSERT INTO public.sys_load_error_detail (session_id, file_name, line_number,"
                    " column_name, column_type, column_length, position, error_code, error_message)"
                    " VALUES (:s, :f, :l, :c, :t, :n, 0, :code, :m)"
                ),
                {"s": session_id, "f": err.file, "l": err.line, "c": column.name if column else "",
                 "t": ("varchar" if column.varchar_bytes else column.type[:10]) if column else "",
                 "n": str(column.varchar_bytes or "") if column else "", "code": err.code,
                 "m": err.message[:512]},
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
        if "STATUPDATE" in opts and opts["STATUPDATE"] not in STATUPDATE_VALUES:
            raise StatementError(f"STATUPDATE takes ON or OFF, not {opts['STATUPDATE']}")
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
                    raise StatementError(
                        f"Manifest file is invalid: mandatory file {entry['url']} not found"
                    ) from None
                continue
            try:
                if fmt == "PARQUET":
                    rows += _parquet(data, columns, request, entry["url"])
                else:
                    rows += _csv(data, columns, request)
            except LoadError as err:
                err.file = entry["url"]
                raise
        return rows


def _failing(message: str, parameters: Any = None) -> str:
    """A statement that fails with `message` (SQLSTATE XX000, as Redshift's errors). The message may quote
    data: the dollar tag avoids it, and `%` is doubled when the driver formats bound parameters into it."""
    text = message.replace("'", "''")
    if parameters:
        text = text.replace("%", "%%")
    tag = "$rs_double$"
    while tag in text:
        tag = tag[:-1] + "x$"
    return f"DO {tag} BEGIN RAISE EXCEPTION '{text}' USING ERRCODE = 'XX000'; END {tag}"


# --- statements other than COPY -------------------------------------------------------------------------


def _ddl_refusal(statement: str) -> str | None:
    """[Character types] Redshift's VARCHAR holds at most 65535 bytes; PostgreSQL would take more."""
    code = sql_code(statement, identifiers=False)
    if DDL.match(code):
        for m in VARCHAR_TYPE.finditer(code):
            if int(m.group(1)) > VARCHAR_MAX_BYTES:
                return f"length for type varchar cannot exceed {VARCHAR_MAX_BYTES}"
    return None


def _ident_name(text: str) -> str:
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.translate(ASCII_LOWER)


def _alter_column_refusal(cursor, statement: str) -> str | None:
    """[ALTER TABLE] "ALTER COLUMN column_name TYPE new_data_type: A clause that changes the size of a column
    defined as a VARCHAR data type" with these limitations: not below the maximum size of existing data, not
    on columns with default values or UNIQUE/PRIMARY KEY/FOREIGN KEY, not within a transaction block."""
    m = ALTER_TABLE.match(sql_code(statement))
    if m is None or not TYPE_CLAUSE.search(m.group("rest")):
        return None
    raw = cursor.connection  # psycopg2's: outside a transaction block only in autocommit mode, and idle
    if not raw.autocommit or raw.info.transaction_status != TRANSACTION_STATUS_IDLE:
        return "ALTER TABLE ALTER COLUMN cannot run inside a transaction block"
    one = ONE_TYPE_CLAUSE.fullmatch(m.group("rest"))
    new = NEW_VARCHAR.fullmatch(one.group("type").strip()) if one else None
    if one is None or new is None:
        return ("ALTER TABLE ALTER COLUMN TYPE only changes the size of a VARCHAR column, one clause per "
                f"statement: {m.group('rest')[:200]}")
    table, column = m.group("table"), _ident_name(one.group("column"))
    cursor.execute(
        "SELECT attnum, format_type(atttypid, atttypmod), atthasdef FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = %s AND attnum > 0 AND NOT attisdropped",
        (table, column),
    )
    found = cursor.fetchone()
    if found is None:
        return None  # PostgreSQL names the missing table or column itself
    attnum, current, has_default = found
    if StagingColumn(column, current, False).varchar_bytes is None:
        return f'ALTER TABLE ALTER COLUMN TYPE only changes the size of a VARCHAR; "{column}" is {current}'
    if has_default:
        return f'ALTER TABLE ALTER COLUMN TYPE can\'t alter column "{column}": it has a default value'
    cursor.execute(
        "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype IN ('p', 'u', 'f') "
        "AND %s = ANY (conkey)",
        (table, attnum),
    )
    if cursor.fetchone() is not None:
        return (f'ALTER TABLE ALTER COLUMN TYPE can\'t alter column "{column}": it is in a PRIMARY KEY, '
                "UNIQUE or FOREIGN KEY constraint")
    size = VARCHAR_MAX_BYTES if new.group("size").upper() == "MAX" else int(new.group("size"))
    quoted = '"' + column.replace('"', '""') + '"'
    cursor.execute(f"SELECT COALESCE(MAX(octet_length({quoted})), 0) FROM {table}")
    if size < cursor.fetchone()[0]:
        return "target column size should be greater or equal to current maximum column size"
    return None


# --- COPY: Parquet ---------------------------------------------------------------------------------------


def _redshift_type(pg_type: str) -> str:
    names = {"timestamp with time zone": "TIMESTAMPTZ", "timestamp without time zone": "TIMESTAMP"}
    return names.get(pg_type, pg_type.replace("character varying", "varchar").upper())


def _parquet_fits(pg_type: str, physical: str, logical: dict) -> bool | None:
    """Whether a Parquet column of this physical and logical type loads into a column of `pg_type`; None when
    the double does not model `pg_type`. See the module docstring for where the pairs come from."""
    kind = logical.get("Type", "None")
    if pg_type == "bigint":
        signed64 = kind == "Int" and logical.get("bitWidth") == 64 and logical.get("isSigned") is True
        return physical == "INT64" and (kind == "None" or signed64)
    if pg_type == "boolean":
        return physical == "BOOLEAN" and kind == "None"
    if pg_type == "double precision":
        return physical == "DOUBLE" and kind == "None"
    if pg_type.startswith("character varying("):
        return physical == "BYTE_ARRAY" and kind == "String"
    if pg_type == "date":
        return physical == "INT32" and kind == "Date"
    if pg_type in ("timestamp without time zone", "timestamp with time zone"):
        unit = logical.get("timeUnit")
        if physical != "INT64" or kind != "Timestamp" or unit not in ("milliseconds", "microseconds"):
            return False
        # Assumption (docs silent, FIELD_NOTES): only UTC-adjusted instants go into TIMESTAMPTZ.
        return pg_type == "timestamp without time zone" or logical.get("isAdjustedToUTC") is True
    return None


def _check_parquet_schema(pf: pq.ParquetFile, columns: list[StagingColumn], url: str) -> None:
    fields = pf.schema_arrow
    if len(fields) != len(columns):
        raise StatementError(
            f"Spectrum Scan Error: the file has {len(fields)} columns, the table {len(columns)}"
        )
    leaves = pf.schema
    if len(leaves) != len(fields):
        raise StatementError(f"the COPY double does not model nested Parquet columns ({url})")
    for k, col in enumerate(columns):
        leaf = leaves.column(k)
        if leaf.physical_type == "INT96":
            raise StatementError(f"the COPY double does not model Parquet INT96 timestamps ({leaf.name})")
        logical = orjson.loads(leaf.logical_type.to_json())
        fits = _parquet_fits(col.type, leaf.physical_type, logical)
        if fits is None:
            raise StatementError(f"the COPY double does not model column type {col.type}")
        if not fits:
            annotated = logical.get("Type", "None") != "None"
            parquet = leaf.physical_type + (f" {leaf.logical_type}" if annotated else "")
            raise StatementError(
                f"Spectrum Scan Error: File '{url}' has an incompatible Parquet schema for column "
                f"'{url}.{col.name}'. Column type: {_redshift_type(col.type)}, Parquet schema: {parquet}"
            )


def _parquet_values(col: StagingColumn, values: pa.ChunkedArray) -> list:
    if col.varchar_bytes is None:
        return values.to_pylist()
    arr = values.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    raw = arr.view(pa.large_binary() if pa.types.is_large_string(arr.type) else pa.binary())
    return [None if b is None else b.decode("utf-8", "surrogateescape") for b in raw.to_pylist()]


def _parquet(data: bytes, columns: list[StagingColumn], request: CopyRequest, url: str) -> list[tuple]:
    pf = pq.ParquetFile(io.BytesIO(data))
    _check_parquet_schema(pf, columns, url)
    table = pf.read()
    by_column = [_parquet_values(col, table.column(k)) for k, col in enumerate(columns)]
    rows = []
    for n in range(table.num_rows):
        row = []
        for col, values in zip(columns, by_column, strict=True):
            value = values[n]
            if value is not None and col.varchar_bytes is not None:
                value = _text(col, value, request.options, n + 1)
                if "\0" in value:
                    raise LoadError(UNDOCUMENTED, "Refused by the COPY double: a NUL (0x00) inside a "
                                    "Parquet string; what Redshift loads is undocumented and PostgreSQL "
                                    "cannot store it", n + 1, col)
            _check(col, value, n + 1)
            row.append(value)
        rows.append(tuple(row))
    return rows


# --- COPY: CSV -------------------------------------------------------------------------------------------


def _csv(data: bytes, columns: list[StagingColumn], request: CopyRequest) -> list[tuple]:
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


def _shown(raw: str) -> str:
    return raw.replace("\0", "\\0") if raw else '""'


def _convert(col: StagingColumn, raw: str, quoted: bool, request: CopyRequest, line: int) -> Any:
    opts = request.options
    null_string = request.null_string
    value: Any
    if raw == null_string:  # [Data conversion parameters: NULL AS] any column type
        if quoted:
            raise LoadError(UNDOCUMENTED, "Refused by the COPY double: the quoted field "
                            f"\"{_shown(raw)}\" equals the NULL AS string; whether Redshift loads a quoted "
                            "null string as NULL or as text is undocumented, so a writer must not produce it",
                            line, col)
        value = None
    elif "\0" in raw:
        if null_string == "\0":
            raise LoadError(UNDOCUMENTED, "Refused by the COPY double: a NUL (0x00) inside a longer field; "
                            "Redshift keeps it in the value (NULL AS '\\0' matches only a field of NUL), "
                            "PostgreSQL cannot store it", line, col)
        raise LoadError(1214, "NUL (0x00) found: COPY treats it as an end of record and fails; only "
                        "NULL AS '\\0' loads a field of only NUL, as NULL", line, col)
    elif col.varchar_bytes is not None:
        value = _csv_text(col, raw, quoted, request, line)
    elif raw.strip() == "":  # [EMPTYASNULL, BLANKSASNULL] other types: empty and blank fields are always NULL
        if quoted:
            raise LoadError(UNDOCUMENTED, f"Refused by the COPY double: the quoted field \"{raw}\" in a "
                            f"{col.type} column; the docs make only unquoted empty fields NULL", line, col)
        value = None
    elif INVALID_UTF8.search(raw):
        raise LoadError(1220, "String contains invalid or unsupported UTF8 codepoints", line, col)
    else:
        value = _typed(col, raw.strip(), opts, line)
    _check(col, value, line)
    return value


def _csv_text(col: StagingColumn, raw: str, quoted: bool, request: CopyRequest, line: int) -> str | None:
    if raw == "" and request.flag("EMPTYASNULL"):
        if quoted:
            raise LoadError(UNDOCUMENTED, 'Refused by the COPY double: reading a quoted empty field "" under '
                            "EMPTYASNULL is undocumented in Redshift (NULL or an empty string?), so the "
                            "project must never write it into a nullable VARCHAR column (write no empty "
                            "string)", line, col)
        return None
    if request.flag("BLANKSASNULL") and not quoted and raw and raw.strip() == "":
        return None
    value = _text(col, raw, request.options, line)
    if request.flag("TRUNCATECOLUMNS"):
        value = value.encode("utf-8")[: col.varchar_bytes].decode("utf-8", "ignore")
    return value


# --- COPY: values ----------------------------------------------------------------------------------------


def _text(col: StagingColumn, raw: str, opts: dict, line: int) -> str:
    """[Data conversion parameters: ACCEPTINVCHARS] each invalid UTF-8 byte fails the load, or with
    ACCEPTINVCHARS becomes the replacement character (equal length in bytes). Both formats."""
    bad = INVALID_UTF8.search(raw)
    if bad is None:
        return raw
    if "ACCEPTINVCHARS" not in opts:
        raise LoadError(1220, "String contains invalid or unsupported UTF8 codepoints. "
                        f"Bad UTF8 hex sequence: {ord(bad.group(0)) - 0xDC00:02x}", line, col)
    return INVALID_UTF8.sub(str(opts["ACCEPTINVCHARS"]), raw)


def _check(col: StagingColumn, value: Any, line: int) -> None:
    """[Character types] VARCHAR(n) holds n bytes; [Data conversion parameters: NULL AS] NULL into NOT NULL
    fails the load."""
    if value is None and col.not_null:
        raise LoadError(1213, "Missing data for not-null field", line, col)
    limit = col.varchar_bytes
    if limit is not None and value is not None and (size := len(value.encode("utf-8"))) > limit:
        raise LoadError(1204, f"String length exceeds DDL length ({size} > {limit} bytes)", line, col)


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
        code = 1207 if kind == "bigint" else 1206
        raise LoadError(code, f"Invalid {kind} value '{raw}'", line, col) from None
    raise StatementError(f"the COPY double does not model column type {kind}")
