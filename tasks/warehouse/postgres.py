"""Warehouses that speak the PostgreSQL protocol, through SQLAlchemy: PostgreSQL itself, and the base
that Redshift shares with it.

`SqlWarehouse` creates tables from the schema module, adds columns the schema gained since (compared
with `information_schema.columns`, never the dialect's reflection, which queries Redshift-only catalog
columns), and loads a day per table in one transaction: temporary staging table, bulk load, count check,
then the portable merge of `tasks.warehouse.base.merge_and_record`. Subclasses only say how staging is filled.
`PostgresWarehouse` streams the day's gzip CSV parts through `COPY ... FROM STDIN`.
"""

from __future__ import annotations

import gzip
import io
import re
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import psycopg2
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from tasks import run_logger
from tasks.lake.bucket import Bucket
from tasks.lake.curate import TableFiles
from tasks.schema import TABLES, Dialect, Table, qualified, quote_ident
from tasks.warehouse.base import (
    LOAD_TABLES,
    MergeResult,
    Warehouse,
    WarehouseError,
    merge_and_record,
    staging_name,
    values_statements,
)

# Every form an AWS credential takes in COPY text: CREDENTIALS key=value pairs, and the account id of any
# ARN (an IAM role's, or the `arn:aws:redshift:<region>:<account>:dbuser:...` that Redshift's "not
# authorized to assume IAM Role" error names); the rest of an ARN is kept, so a log still says which role.
_SECRET_PAIRS = re.compile(r"(aws_access_key_id|aws_secret_access_key|token)=[^;'\s]*", re.IGNORECASE)
_ARN_ACCOUNT = re.compile(r"(arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:)\d{12}(?=:)")


def redact(text: str) -> str:
    """`text` with every AWS credential masked: for logged SQL and error messages."""
    return _ARN_ACCOUNT.sub(r"\1************", _SECRET_PAIRS.sub(r"\1=***", text))


def engine_url(url: str, password: str | None, drivername: str | None = None) -> sa.URL:
    """The block's URL (no password in it) with the password from the block's SecretStr."""
    parsed = sa.make_url(url)
    if password:
        parsed = parsed.set(password=password)
    if drivername:
        parsed = parsed.set(drivername=drivername)
    return parsed


def staging_ddl(table: Table, dialect: Dialect) -> str:
    """A temporary table, created and dropped inside the load's transaction (a rollback undoes its
    creation), with the target's columns in the schema's order, which is also the order of the curated
    Parquet and CSV columns (Parquet COPY maps by position). No primary key: the merge deduplicates,
    and a duplicate must not fail the load. Redshift keeps the target's DISTKEY so the merge's join stays on each slice."""
    cols = ",\n".join(
        f"    {quote_ident(c.name)} {c.sql_type(dialect)}{'' if c.nullable else ' NOT NULL'}"
        for c in table.columns
    )
    sql = f"CREATE TEMPORARY TABLE {quote_ident(staging_name(table))} (\n{cols}\n)"
    if dialect == "redshift" and table.distkey:
        sql += f"\nDISTSTYLE KEY DISTKEY ({quote_ident(table.distkey)})"
    return sql


def add_column_statements(table: Table, existing: list[str], dialect: Dialect, schema: str | None) -> list[str]:
    """`ALTER TABLE ADD COLUMN` for each schema column the target lacks. Added columns are nullable even
    when the schema says NOT NULL: rows already loaded have no value for them (Redshift and PostgreSQL
    both refuse NOT NULL without a default on a table with rows)."""
    have = set(existing)
    target = qualified(table.name, schema)
    return [
        f"ALTER TABLE {target} ADD COLUMN {quote_ident(c.name)} {c.sql_type(dialect)}"
        for c in table.columns
        if c.name not in have
    ]


def widen_column_statements(table: Table, existing: dict[str, int | None], dialect: Dialect,
                            schema: str | None) -> list[str]:
    """`ALTER TABLE ... ALTER COLUMN ... TYPE VARCHAR(n)` for each column the target declares narrower than
    the schema does (Redshift's only in-place type change: a longer VARCHAR). Key columns cannot change
    in place (Redshift refuses a primary key column), so a widened key is an error naming the fix."""
    statements = []
    for c in table.columns:
        have, want = existing.get(c.name), c.max_bytes if dialect == "redshift" else None
        if have is None or want is None or have >= want:
            continue
        if c.name in table.primary_key:
            raise WarehouseError(
                f"{table.name}.{c.name} is VARCHAR({have}) in the warehouse but VARCHAR({want}) in the schema, "
                "and a key column cannot be widened in place: rebuild the table (a deep copy) with the new DDL"
            )
        statements.append(f"ALTER TABLE {qualified(table.name, schema)} ALTER COLUMN {quote_ident(c.name)} "
                          f"TYPE {c.sql_type(dialect)}")
    return statements


@dataclass(frozen=True)
class Timeouts:
    """Limits every session sets, so that a lock another session holds, or a statement that never ends,
    fails the run with a clear error instead of hanging it (the warehouse block's fields)."""

    lock_seconds: float = 60
    statement_seconds: float = 1800


DEFAULT_TIMEOUTS = Timeouts()


def block_timeouts(block: Any) -> Timeouts:
    """The timeouts of an `x-pipeline-warehouse` block."""
    return Timeouts(block.lock_timeout_seconds, block.statement_timeout_seconds)


# SQLSTATEs of a wait for a lock that ran out (55P03) and of a cancelled statement (57014: statement_timeout).
_LOCK_TIMEOUT, _CANCELED = "55P03", "57014"


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error: psycopg2's `pgcode`, or the `C` field of the server's error fields
    that redshift_connector passes as its first argument."""
    code = getattr(error, "pgcode", None)
    if code is None and error.args and isinstance(error.args[0], dict):
        code = error.args[0].get("C")
    return code


class SqlWarehouse(Warehouse):
    """A SQLAlchemy engine, DDL and migrations from the schema module, and the staged merge."""

    dialect: Dialect

    def __init__(self, url: sa.URL, schema: str | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self.schema = schema
        self.timeouts = timeouts
        # hide_parameters: a failing statement's bound values never reach an exception message.
        self.engine: Engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
        sa.event.listen(self.engine, "connect", self._configure_session)
        # The pre-ping's `SELECT 1` opens a transaction on a driver without autocommit (redshift_connector
        # sends `begin transaction` first): end it, so each checkout starts idle and an AUTOCOMMIT
        # connection (the VARCHAR widening, which Redshift refuses inside a transaction block) really is one.
        sa.event.listen(self.engine, "checkout", lambda dbapi_connection, _record, _proxy: dbapi_connection.rollback())

    def session_settings(self) -> list[str]:
        """`SET` statements run on every new connection (values in milliseconds)."""
        return [f"SET lock_timeout TO {round(self.timeouts.lock_seconds * 1000)}",
                f"SET statement_timeout TO {round(self.timeouts.statement_seconds * 1000)}"]

    def _configure_session(self, dbapi_connection: Any, _record: Any) -> None:
        # Outside a transaction: a SET inside one is undone when the pool rolls the connection back.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        try:
            for sql in self.session_settings():
                cursor.execute(sql)
        finally:
            cursor.close()
            dbapi_connection.autocommit = autocommit

    def timeout_error(self, exc: DBAPIError, what: str, table: str) -> WarehouseError | None:
        """A clear error when `exc` is a lock or statement timeout, else None."""
        code = sqlstate(exc.orig)
        reason = redact(str(exc.orig)).strip()
        if code == _LOCK_TIMEOUT or "lock timeout" in reason:
            return WarehouseError(
                f"{what} failed: waited longer than the lock timeout (lock_timeout_seconds = "
                f"{self.timeouts.lock_seconds:g}) for a lock on {table} that another session holds; nothing was "
                f"committed. Find the holder in pg_locks / pg_stat_activity, or raise the block's timeout ({reason})"
            )
        if code == _CANCELED or any(m in reason for m in ("statement timeout", "canceled on user", "cancelled on user")):
            return WarehouseError(
                f"{what} failed: a statement on {table} ran longer than the statement timeout "
                f"(statement_timeout_seconds = {self.timeouts.statement_seconds:g}), which also ends a wait for a "
                f"lock another session holds; nothing was committed ({reason})"
            )
        return None

    def describe(self) -> str:
        where = self.engine.url.render_as_string(hide_password=True)
        return f"{self.dialect} {where}" + (f" schema {self.schema}" if self.schema else "")

    def close(self) -> None:
        self.engine.dispose()

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        with self.engine.connect() as conn:
            result = conn.execute(sa.text(sql), params or {})
            return [tuple(r) for r in result] if result.returns_rows else []

    def execute_script(self, statements: list[str]) -> None:
        with self.engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)

    def stage_and_run(self, table: Table, rows: pa.Table, statements: list[str]) -> None:
        """Staging filled by multi-row INSERTs of literals (`values_statements`), the one way to send rows that
        PostgreSQL and Redshift share without a bucket: Redshift's bulk path is COPY from S3, which would need
        the rows written to the bucket first, and these are a day's new rows of a few small columns."""
        stg = quote_ident(staging_name(table))
        self.execute_script([staging_ddl(self.design(table), self.dialect), *values_statements(table, stg, rows),
                             *statements, f"DROP TABLE {stg}"])

    def existing_columns(self, conn: Connection) -> dict[str, dict[str, int | None]]:
        """Table -> column -> declared VARCHAR length (None for other types and unbounded VARCHAR)."""
        where = '"table_schema" = :schema' if self.schema else '"table_schema" = current_schema()'
        rows = conn.execute(
            sa.text(
                'SELECT "table_name", "column_name", "character_maximum_length" FROM "information_schema"."columns" '
                f'WHERE {where} ORDER BY "table_name", "ordinal_position"'
            ),
            {"schema": self.schema} if self.schema else {},
        )
        found: dict[str, dict[str, int | None]] = {}
        for table_name, column_name, length in rows:
            found.setdefault(table_name, {})[column_name] = length
        return found

    def ensure_tables(self) -> None:
        """Create missing tables and add columns the schema gained, in one transaction; then widen the
        VARCHAR columns the schema widened, each on its own (Redshift refuses `ALTER COLUMN ... TYPE` inside
        a transaction block)."""
        logger = run_logger(__name__)
        try:
            with self.engine.begin() as conn:
                if self.schema:
                    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
                for table in LOAD_TABLES:
                    conn.exec_driver_sql(self.design(table).create_sql(self.dialect, self.schema))
                existing = self.existing_columns(conn)
                for table in TABLES.values():
                    columns = existing.get(table.name, {})
                    for sql in add_column_statements(table, list(columns), self.dialect, self.schema):
                        logger.info("migrating %s: %s", table.name, sql)
                        conn.exec_driver_sql(sql)
                    extra = [c for c in columns if c not in table.column_names]
                    if extra:
                        logger.warning("%s keeps columns the schema no longer has: %s", table.name, extra)
        except DBAPIError as exc:
            if timeout := self.timeout_error(exc, "creating or migrating the tables", "one of the tables"):
                raise timeout from None
            raise
        widen = [sql for table in TABLES.values()
                 for sql in widen_column_statements(table, existing.get(table.name, {}), self.dialect, self.schema)]
        if widen:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for sql in widen:
                    logger.info("migrating: %s", sql)
                    try:
                        conn.exec_driver_sql(sql)
                    except DBAPIError as exc:
                        raise WarehouseError(
                            f"could not widen a column ({sql}): {str(exc.orig).strip()}. Redshift cannot alter "
                            "a column with a BYTEDICT, RUNLENGTH, TEXT255 or TEXT32K encoding or a key column: "
                            "rebuild that table (a deep copy) with the schema's DDL"
                        ) from None

    @abstractmethod
    def fill_staging(self, conn: Connection, bucket: Bucket, files: TableFiles, table: Table) -> int:
        """Bulk load the day's files into the staging table; returns the rows the load reported."""

    def load_error(self, conn: Connection, table: Table, files: TableFiles, exc: DBAPIError) -> WarehouseError:
        """The error to raise when a statement failed; the transaction is already rolled back."""
        return WarehouseError(f"loading {table.name} for {files.day} failed: {redact(str(exc.orig)).strip()}")

    def load_day(self, bucket: Bucket, files: TableFiles) -> MergeResult:
        table = TABLES[files.table]
        stg = quote_ident(staging_name(table))
        with self.engine.connect() as conn:

            def run(sql: str) -> Any:
                result = conn.exec_driver_sql(sql)
                return result.scalar() if result.returns_rows else None

            try:
                with conn.begin():
                    conn.exec_driver_sql(staging_ddl(self.design(table), self.dialect))
                    # A day with no rows of the table still merges (its old rows of the day go), but loads
                    # nothing: Redshift rejects an empty manifest.
                    loaded = self.fill_staging(conn, bucket, files, table) if files.parquet or files.csv else 0
                    staged = run(f"SELECT COUNT(*) FROM {stg}")
                    if not loaded == staged == files.rows:
                        raise WarehouseError(
                            f"{table.name} {files.day}: the load reported {loaded} rows and staging holds "
                            f"{staged}, but the manifest lists {files.rows}; nothing was merged"
                        )
                    merged = merge_and_record(files, self.schema, run, staged)
                    conn.exec_driver_sql(f"DROP TABLE {stg}")
            except DBAPIError as exc:
                # `from None`: the SQLAlchemy error carries the statement text, which may hold credentials.
                timeout = self.timeout_error(exc, f"loading {table.name} for {files.day}", table.name)
                raise timeout or self.load_error(conn, table, files, exc) from None
        return merged


class PostgresWarehouse(SqlWarehouse):
    """PostgreSQL: the day's CSV parts are streamed from the bucket through `COPY ... FROM STDIN`."""

    dialect: Dialect = "postgresql"

    def fill_staging(self, conn: Connection, bucket: Bucket, files: TableFiles, table: Table) -> int:
        logger = run_logger(__name__)
        raw = conn.connection.dbapi_connection  # psycopg2's copy_expert is not exposed by SQLAlchemy
        # HEADER MATCH (PostgreSQL 15+) also checks that the CSV's columns are the staging table's.
        header = "MATCH" if raw.server_version >= 150000 else "true"
        copy = f"COPY {quote_ident(staging_name(table))} FROM STDIN WITH (FORMAT csv, HEADER {header})"
        loaded = 0
        with raw.cursor() as cur:
            for obj, rows in zip(files.csv, files.part_rows, strict=True):
                with gzip.GzipFile(fileobj=io.BytesIO(bucket.read(obj.key))) as stream:
                    try:
                        cur.copy_expert(copy, stream)
                    except psycopg2.Error as exc:
                        raise WarehouseError(
                            f"COPY of {bucket.url(obj.key)} into {table.name} failed: {str(exc).strip()}"
                        ) from None
                if cur.rowcount != rows:
                    raise WarehouseError(
                        f"{bucket.url(obj.key)}: COPY loaded {cur.rowcount} rows, the manifest lists {rows}"
                    )
                loaded += cur.rowcount
                logger.info("%s: copied %d rows from %s", table.name, rows, obj.key)
        return loaded
