"""Amazon Redshift: COPY from the day's S3 manifest into staging, verified, merged in one transaction.

The COPY statement is built with `sqlalchemy_redshift.commands.CopyCommand` and compiled with literal
values (bound parameters reach the server as `$1`, which COPY rejects: sqlalchemy-redshift issue 240).
CopyCommand does not check option combinations, so `validate_copy_options` rejects, before anything is
sent, the ones Redshift rejects. After COPY, `pg_last_copy_count()` must equal the manifest's
`record_count`; a failed COPY is explained from `SYS_LOAD_ERROR_DETAIL` (file, line, column, reason).
Every COPY that reaches a log or an error message has its credentials masked (`redact`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import quoted_name
from sqlalchemy_redshift.commands import Compression, CopyCommand, Format
from sqlalchemy_redshift.dialect import RedshiftDialect_redshift_connector

from tasks import run_logger
from tasks.lake.bucket import Bucket
from tasks.lake.curate import TableFiles, read_manifest
from tasks.schema import Dialect as SqlDialect
from tasks.schema import Table
from tasks.warehouse.base import WarehouseError, staging_name
from tasks.warehouse.postgres import (
    DEFAULT_TIMEOUTS,
    SqlWarehouse,
    Timeouts,
    block_timeouts,
    engine_url,
    redact,
)

if TYPE_CHECKING:
    from blocks.warehouse import Warehouse as WarehouseBlock

CopyFormat = Literal["parquet", "csv"]
# Redshift's documented null string for a field of only NUL characters (COPY "NULL AS", data conversion).
NUL_FIELD = "\\0"
TableDesign = Literal["schema", "auto"]


class CopyOptionsError(ValueError):
    """A COPY option set Redshift would reject; raised before the statement is sent."""


@dataclass(frozen=True)
class CopyOptions:
    """The COPY options this pipeline can send. `for_format` gives the ones it uses."""

    format: CopyFormat = "parquet"
    gzip: bool = False
    ignore_header: int | None = None
    time_format: str | None = None
    date_format: str | None = None
    accept_inv_chars: str | None = None
    empty_as_null: bool = False
    blanks_as_null: bool = False
    truncate_columns: bool = False
    escape: bool = False
    remove_quotes: bool = False
    fixed_width: tuple[tuple[str, int], ...] | None = None
    delimiter: str | None = None
    max_error: int | None = None
    region: str | None = None
    stat_update: bool | None = None
    comp_update: bool | None = None
    null_as: str | None = None

    @classmethod
    def for_format(cls, fmt: CopyFormat, accept_inv_chars: str | None = None) -> CopyOptions:
        """The options of the staging COPY. STATUPDATE OFF: the staging table is temporary and emptied by
        every load, so statistics on it are wasted work. The curated CSV is gzip, has a header line and
        ISO-8601 timestamps, and writes null as an empty unquoted field, which EMPTYASNULL reads as null in
        VARCHARs (Redshift's documented rule; other types always read it as null). `NULL AS '\\0'` replaces
        the default null string `\\N`, so a text that is exactly `\\N` stays text; it matches only a field of
        NUL characters, which normalize removes from every value (`clean_strings`), as it makes empty
        strings null (how Redshift reads a quoted `""` under EMPTYASNULL is undocumented)."""
        if fmt == "csv":
            return cls("csv", gzip=True, ignore_header=1, time_format="auto", empty_as_null=True,
                       accept_inv_chars=accept_inv_chars, null_as=NUL_FIELD, stat_update=False)
        if fmt == "parquet":
            return cls("parquet", accept_inv_chars=accept_inv_chars, stat_update=False)
        raise CopyOptionsError(f"COPY format {fmt!r} is not supported; use 'parquet' or 'csv'")


# Option name as Redshift spells it, for error messages.
_KEYWORDS = {
    "gzip": "GZIP", "ignore_header": "IGNOREHEADER", "time_format": "TIMEFORMAT", "date_format": "DATEFORMAT",
    "accept_inv_chars": "ACCEPTINVCHARS", "empty_as_null": "EMPTYASNULL", "blanks_as_null": "BLANKSASNULL",
    "truncate_columns": "TRUNCATECOLUMNS", "escape": "ESCAPE", "remove_quotes": "REMOVEQUOTES",
    "fixed_width": "FIXEDWIDTH", "delimiter": "DELIMITER", "max_error": "MAXERROR", "region": "REGION",
    "stat_update": "STATUPDATE", "comp_update": "COMPUPDATE", "null_as": "NULL AS",
}
# Redshift documents the parameters a columnar (Parquet/ORC) COPY accepts; these are the ones modelled here.
_PARQUET_ALLOWED = {"format", "accept_inv_chars", "stat_update"}
_CSV_REJECTED = ("escape", "remove_quotes", "fixed_width")


def _set_options(options: CopyOptions) -> list[str]:
    defaults = CopyOptions()
    return [f.name for f in fields(CopyOptions) if getattr(options, f.name) != getattr(defaults, f.name)]


def validate_copy_options(options: CopyOptions) -> None:
    """Raise `CopyOptionsError` for any option set Redshift would reject, naming every offending option."""
    if options.format == "parquet":
        bad = [o for o in _set_options(options) if o not in _PARQUET_ALLOWED]
        if bad:
            names = ", ".join(_KEYWORDS[o] for o in bad)
            raise CopyOptionsError(
                f"COPY FORMAT AS PARQUET cannot be used with {names}: Redshift accepts only ACCEPTINVCHARS, "
                "STATUPDATE, MANIFEST and the authorization for columnar files"
            )
    elif options.format == "csv":
        bad = [o for o in _CSV_REJECTED if getattr(options, o)]
        if bad:
            names = ", ".join(_KEYWORDS[o] for o in bad)
            raise CopyOptionsError(f"COPY FORMAT AS CSV cannot be used with {names} (Redshift rejects it)")
        if options.delimiter is not None and len(options.delimiter) != 1:
            raise CopyOptionsError("DELIMITER must be a single character")
        if options.ignore_header is not None and options.ignore_header < 0:
            raise CopyOptionsError("IGNOREHEADER must be a number of lines >= 0")
        if options.max_error is not None and options.max_error < 0:
            raise CopyOptionsError("MAXERROR must be >= 0")
        if options.null_as is not None and ("'" in options.null_as or not options.null_as.isprintable()):
            raise CopyOptionsError("NULL AS takes printable text without a quote (e.g. '\\0' or '\\N')")
    else:
        raise CopyOptionsError(f"COPY format {options.format!r} is not supported; use 'parquet' or 'csv'")
    char = options.accept_inv_chars
    if char is not None and (len(char) != 1 or not char.isascii() or char == "\0"):
        raise CopyOptionsError("ACCEPTINVCHARS takes one ASCII character other than NUL (Redshift's rule)")


@dataclass(frozen=True)
class CopyAuthorization:
    """How Redshift reads the bucket: an IAM role ARN (preferred) or access keys (a session token for
    temporary ones). Keys are SecretStr so they never print."""

    iam_role_arn: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = field(default=None, repr=False)
    session_token: SecretStr | None = field(default=None, repr=False)

    def copy_kwargs(self) -> dict[str, str]:
        if self.iam_role_arn:
            return {"iam_role_arns": self.iam_role_arn}
        if self.access_key_id and self.secret_access_key:
            kwargs = {
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key.get_secret_value(),
            }
            if self.session_token:
                kwargs["session_token"] = self.session_token.get_secret_value()
            return kwargs
        raise WarehouseError(
            "Redshift COPY needs an authorization: set the warehouse block's iam_role_arn "
            "(preferred) or aws_credentials_block"
        )


@dataclass(frozen=True)
class CopyStatement:
    sql: str  # what is sent: holds the credentials
    masked: str  # what is logged

    def __repr__(self) -> str:
        return f"CopyStatement({self.masked!r})"


def build_copy(
    target: str,
    manifest_url: str,
    options: CopyOptions,
    auth: CopyAuthorization,
    schema: str | None = None,
) -> CopyStatement:
    """`COPY target FROM 's3://.../manifest' ... MANIFEST`, validated, compiled with literal values by a
    dialect that never connects: a connected engine's dialect stops doubling backslashes in literals after
    its first connect, and the text sent must not depend on that."""
    validate_copy_options(options)
    if not manifest_url.startswith("s3://"):
        raise WarehouseError(f"Redshift COPY reads from S3; {manifest_url} is not an s3:// URL")
    try:
        command = CopyCommand(
            # quoted_name(..., True): quoted like every identifier the project sends, reserved or not.
            sa.Table(quoted_name(target, True), sa.MetaData(), schema=quoted_name(schema, True) if schema else None),
            manifest_url,
            **auth.copy_kwargs(),
            format=Format.parquet if options.format == "parquet" else Format.csv,
            manifest=True,
            compression=Compression.gzip if options.gzip else None,
            ignore_header=options.ignore_header,
            time_format=options.time_format,
            date_format=options.date_format,
            accept_inv_chars=options.accept_inv_chars,
            empty_as_null=options.empty_as_null,
            blanks_as_null=options.blanks_as_null,
            truncate_columns=options.truncate_columns,
            escape=options.escape,
            remove_quotes=options.remove_quotes,
            fixed_width=options.fixed_width,
            delimiter=options.delimiter,
            max_error=options.max_error,
            region=options.region,
            stat_update=options.stat_update,
            comp_update=options.comp_update,
            # Rendered as written, not as a bound literal: sqlalchemy-redshift would double the backslash
            # of '\\0'. The validator keeps quotes out of it.
            dangerous_null_delimiter=options.null_as,
        )
    except (TypeError, ValueError) as exc:  # CopyCommand's own checks (ARN and key formats)
        raise CopyOptionsError(f"invalid COPY authorization or option: {redact(str(exc))}") from None
    sql = str(command.compile(dialect=RedshiftDialect_redshift_connector(), compile_kwargs={"literal_binds": True}))
    return CopyStatement(sql=sql, masked=redact(sql))


LOAD_ERRORS_SQL = """
SELECT TRIM("file_name"), "line_number", TRIM("column_name"), TRIM("column_type"), TRIM("error_message")
FROM "sys_load_error_detail"
WHERE "session_id" = pg_backend_pid()
  AND "query_id" = (SELECT MAX("query_id") FROM "sys_load_error_detail" WHERE "session_id" = pg_backend_pid())
ORDER BY "line_number"
LIMIT 5
"""


class RedshiftWarehouse(SqlWarehouse):
    """Redshift through SQLAlchemy (`redshift+redshift_connector://` in production)."""

    dialect: SqlDialect = "redshift"

    def __init__(self, url: sa.URL, schema: str | None, auth: CopyAuthorization,
                 options: CopyOptions | None = None, table_design: TableDesign = "schema",
                 timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        # Redshift folds identifiers to lower case, quoted or not, and its catalog answers with the folded
        # name: a schema named `Analytics` is `analytics`, so that is the name every statement uses.
        super().__init__(url, schema.lower() if schema else None, timeouts)
        self.auth = auth
        self.options = options or CopyOptions.for_format("parquet")
        self.table_design = table_design
        validate_copy_options(self.options)  # a bad block fails before any table is touched

    def session_settings(self) -> list[str]:
        """Redshift has no `lock_timeout` setting; its `statement_timeout` counts a statement's whole time,
        waiting for a lock included, so it alone bounds a held lock."""
        return [f"SET statement_timeout TO {round(self.timeouts.statement_seconds * 1000)}"]

    def design(self, table: Table) -> Table:
        """`schema`: the schema module's DISTKEY/SORTKEY; `auto`: none, so Redshift's automatic table
        optimization chooses (DISTSTYLE AUTO, SORTKEY AUTO are its defaults when DDL names none)."""
        return table if self.table_design == "schema" else replace(table, distkey=None, sortkey=())

    def copy_statement(self, bucket: Bucket, files: TableFiles, table: Table) -> CopyStatement:
        manifest = files.manifests.get(self.options.format)
        if not manifest:
            raise WarehouseError(f"{table.name} {files.day}: no {self.options.format} manifest was written")
        return build_copy(staging_name(table), bucket.url(manifest), self.options, self.auth)

    def fill_staging(self, conn: Connection, bucket: Bucket, files: TableFiles, table: Table) -> int:
        copy = self.copy_statement(bucket, files, table)
        manifest_rows = read_manifest(bucket, files.manifests[self.options.format])["meta"]["record_count"]
        run_logger(__name__).info("%s: %s", table.name, copy.masked)
        conn.exec_driver_sql(copy.sql)
        copied = conn.exec_driver_sql("SELECT pg_last_copy_count()").scalar_one()
        if copied != manifest_rows:
            raise WarehouseError(
                f"{table.name} {files.day}: COPY loaded {copied} rows but the manifest lists {manifest_rows}"
            )
        return copied

    def load_error(self, conn: Connection, table: Table, files: TableFiles, exc: DBAPIError) -> WarehouseError:
        """Name the file, line, column and reason from SYS_LOAD_ERROR_DETAIL when COPY recorded them."""
        reason = redact(str(exc.orig)).strip()
        # Redshift's COPY failure names the table to read ('sys_load_error_detail' or 'stl_load_errors').
        if "load_error" not in reason.lower():
            return WarehouseError(f"loading {table.name} for {files.day} failed: {reason}")
        try:
            details = conn.exec_driver_sql(LOAD_ERRORS_SQL).fetchall()
            conn.rollback()
        except DBAPIError:
            details = []
        if not details:
            return WarehouseError(f"COPY into {table.name} for {files.day} failed: {reason}")
        lines = [
            f"{file} line {line}, column {column} ({ctype}): {message}"
            for file, line, column, ctype, message in details
        ]
        return WarehouseError(
            f"COPY into {table.name} for {files.day} failed; nothing was committed. "
            f"sys_load_error_detail: " + "; ".join(lines)
        )


def redshift_from_block(block: WarehouseBlock) -> RedshiftWarehouse:
    """A `RedshiftWarehouse` from the `x-pipeline-warehouse` block (kind redshift)."""
    if block.iam_role_arn:
        auth = CopyAuthorization(iam_role_arn=block.iam_role_arn)
    elif block.aws_credentials_block:
        from prefect_aws import AwsCredentials

        try:
            creds = AwsCredentials.load(block.aws_credentials_block, _sync=True)
        except ValueError as exc:
            raise WarehouseError(
                f"AwsCredentials block {block.aws_credentials_block!r} was not found"
            ) from exc
        token = creds.aws_session_token
        auth = CopyAuthorization(
            access_key_id=creds.aws_access_key_id,
            secret_access_key=creds.aws_secret_access_key,
            session_token=SecretStr(token) if isinstance(token, str) else token,
        )
    else:
        auth = CopyAuthorization()
    auth.copy_kwargs()  # fails now, with a clear message, when neither is set
    password = block.password.get_secret_value() if block.password else None
    options = CopyOptions.for_format(block.copy_format, block.copy_accept_invalid_chars)
    return RedshiftWarehouse(engine_url(block.url, password), block.db_schema, auth, options,
                             block.redshift_table_design, block_timeouts(block))
