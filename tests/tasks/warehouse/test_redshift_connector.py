"""The production driver path, `redshift+redshift_connector://`, byte for byte on the wire.

Every other Redshift test runs the psycopg2 driver against PostgreSQL; redshift_connector cannot talk to
PostgreSQL (FIELD_NOTES), so these run the real `RedshiftWarehouse` against `RedshiftWire`, a recording
test double of Redshift's wire protocol on loopback, with real curated files in moto's S3. What they pin:
redshift_connector's implicit transaction (with autocommit off it sends `begin transaction` before the
first statement; SQLAlchemy's commit and rollback arrive as `commit` and `rollback`), its paramstyle
(SQLAlchemy's `format` placeholders become `$1`, `$2` with the values bound), and that literal SQL
arrives untouched. Grammar is checked elsewhere (tests/tasks/test_redshift_sql.py, sqlfluff).
"""

from __future__ import annotations

import gc
import re
import socket
import warnings
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from redshift_connector import core
from redshift_connector.utils import i_pack
from redshift_connector.utils.oids import RedshiftOID

from tasks.lake.s3 import S3Lake
from tasks.schema import TABLES
from tasks.warehouse.base import LOAD_TABLES, WarehouseError, merge_statements, record_load_statements
from tasks.warehouse.postgres import engine_url, staging_ddl
from tasks.warehouse.redshift import CopyAuthorization, CopyOptions, RedshiftWarehouse
from tests.tasks.warehouse.redshift_wire import AUTH_CLEARTEXT, PROTOCOL_3, QUERY, SSL_REQUEST, RedshiftWire

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/RedshiftCopy"
SCHEMA = "analytics"
BEGIN, COMMIT, ROLLBACK = "begin transaction", "commit", "rollback"  # as redshift_connector spells them
PING = "SELECT 1"  # the pool's pre-ping on checkout: the driver opens a transaction for it
CHECKOUT = [BEGIN, PING, ROLLBACK]  # ... which the warehouse's checkout listener ends: work starts idle
SESSION = "SET statement_timeout TO 1800000"  # RedshiftWarehouse's settings, on each new connection
COUNT = [("count", RedshiftOID.BIGINT)]
TEXT, NUMBER = RedshiftOID.VARCHAR, RedshiftOID.INTEGER
LOAD_FAILED = {"C": "XX000", "M": "Load into table 'stg_users' failed.  Check 'sys_load_error_detail' system "
                                  "table for details."}
# Redshift's answer when the cluster may not assume the COPY role: both ARNs carry the account id.
DBUSER = f"arn:aws:redshift:us-east-1:{ACCOUNT}:dbuser:x-pipeline/loader"
ASSUME_FAILED = {
    "C": "XX000",
    "M": f"User {DBUSER} is not authorized to assume IAM Role {ROLE}",
    "D": f"\n  -----------------------------------------------\n  error:  User {DBUSER} is not authorized to "
         f"assume IAM Role {ROLE}\n  code:      8001\n  context:   IAM Role={ROLE}\n  query:     0\n"
         "  location:  xen_aws_credentials_mgr.cpp:402\n  process:   padbmaster [pid=1234]\n"
         "  -----------------------------------------------\n",
}


@pytest.fixture
def wire():
    server = RedshiftWire().start()
    try:
        yield server
    finally:
        server.stop()
    assert server.failures == []  # the double itself never failed


@pytest.fixture
def redshift(wire: RedshiftWire):
    """A factory of production `RedshiftWarehouse`s on the wire double (`ssl=false`: loopback, no TLS)."""
    made: list[RedshiftWarehouse] = []

    def make(options: CopyOptions | None = None) -> RedshiftWarehouse:
        url = engine_url(f"redshift+redshift_connector://loader@127.0.0.1:{wire.port}/dev?ssl=false", "pw", None)
        made.append(RedshiftWarehouse(url, SCHEMA, CopyAuthorization(iam_role_arn=ROLE), options))
        return made[-1]

    yield make
    for warehouse in made:
        warehouse.close()


@pytest.fixture
def day_files(s3_bucket_block, day: date, sample_frames, curate_frames):
    lake = S3Lake(s3_bucket_block)
    return lake, curate_frames(lake, day, sample_frames(day, 30))


def script_load(wire: RedshiftWire, files: dict, merges: dict[str, tuple[int, int, int, int]] | None = None) -> None:
    """Answer a day's load as Redshift would: COPY loads the manifest's rows, staging holds them; the merge's
    counts are `merges[table]` = (target rows before, updated, older, target rows after), by default those
    of an empty target."""
    merges, seen = merges or {}, dict.fromkeys(files, 0)

    def copied(_: re.Match) -> list[tuple[int]]:
        copy = next(s.sql for s in reversed(wire.statements) if s.sql.startswith("COPY "))
        return [(files[re.match(r'COPY "?stg_(\w+)', copy)[1]].rows,)]

    def merge(name: str, at: int) -> list[tuple[int]]:
        return [(merges.get(name, (0, 0, 0, files[name].rows))[at],)]

    def target(m: re.Match) -> list[tuple[int]]:
        seen[m[1]] += 1  # counted before the merge, then after it
        return merge(m[1], 0 if seen[m[1]] % 2 else 3)

    wire.answer(r"^SELECT pg_last_copy_count\(\)$", COUNT, copied)
    wire.answer(r'^SELECT COUNT\(\*\) FROM "stg_(\w+)"$', COUNT, lambda m: [(files[m[1]].rows,)])
    wire.answer(rf'^SELECT COUNT\(\*\) FROM "{SCHEMA}"\."(\w+)"$', COUNT, target)
    wire.answer(r'FROM "stg_(\w+)"\) r WHERE "_rn" = 1\) s WHERE EXISTS \(', COUNT, lambda m: merge(m[1], 1))
    wire.answer(r'FROM "stg_(\w+)"\) r WHERE "_rn" = 1\) s WHERE EXISTS \(.* AND NOT \(', COUNT,
                lambda m: merge(m[1], 2))


def script_catalog(wire: RedshiftWire, lengths: dict[tuple[str, str], int | None]) -> None:
    """information_schema.columns: every schema column, with `lengths` overriding (None: column missing)."""
    rows = [(name, c.name, lengths.get((name, c.name), c.max_bytes)) for name, t in TABLES.items()
            for c in t.columns if lengths.get((name, c.name), 0) is not None]
    wire.answer(r'information_schema"?\."?columns', [("table_name", TEXT), ("column_name", TEXT),
                                                     ("character_maximum_length", NUMBER)], rows)


def connected(wire: RedshiftWire, warehouse: RedshiftWarehouse) -> int:
    """Open the pool's first connection (the dialect's own queries); the index where the test's start."""
    with warehouse.engine.connect():
        pass
    return len(wire.statements)


def test_first_connect_sends_the_dialects_queries_then_the_session_settings(wire, redshift) -> None:
    connected(wire, redshift())
    # No `show standard_conforming_strings`: sqlalchemy-redshift decides without asking.
    assert wire.sql() == [BEGIN, "select pg_catalog.version()", "select current_schema()",
                          "show transaction isolation level", ROLLBACK, SESSION]
    assert wire.statements[-1].status == core.IDLE  # outside a transaction: no rollback undoes it
    startup = wire.startups[0]
    assert (startup["user"], startup["database"], startup["client_protocol_version"]) == ("loader", "dev", "2")
    assert [m.payload for m in wire.messages if m.type == core.PASSWORD] == [b"pw\x00"]  # cleartext, as asked


def test_load_day_sends_each_table_in_one_transaction_exactly_as_composed(
    wire, redshift, day: date, day_files
) -> None:
    lake, files = day_files
    warehouse = redshift()
    staged = files["users"].rows
    script_load(wire, files, {"users": (50, 2, 1, 44 + staged)})  # 3 rows of the day are gone
    start = connected(wire, warehouse)

    results = {name: warehouse.load_day(lake, files[name]) for name in ("tweets", "users")}

    sent = wire.statements[start:]
    # The load's record carries the time it was made: read back from what was sent, the rest composed here.
    load_times = [datetime.fromisoformat(m.group(1)) for s in sent if s.sql.startswith(f'UPDATE "{SCHEMA}"."loaded_days"')
                  for m in [re.search(r"CAST\('([^']+)' AS TIMESTAMPTZ\)", s.sql)] if m]
    expected: list[str] = []
    for name, at in zip(("tweets", "users"), load_times, strict=True):
        table, merge = TABLES[name], merge_statements(TABLES[name], SCHEMA, f"stg_{name}", day)
        expected += [*CHECKOUT, BEGIN, staging_ddl(table, "redshift"),
                     warehouse.copy_statement(lake, files[name], table).sql,
                     "SELECT pg_last_copy_count()", f'SELECT COUNT(*) FROM "stg_{name}"',
                     merge.count_target, merge.updated, merge.older, *merge.delete, merge.insert,
                     merge.count_target, *record_load_statements(files[name], results[name], SCHEMA, at),
                     f'DROP TABLE "stg_{name}"', COMMIT]
    assert [s.raw for s in sent] == [e.encode() for e in expected]  # byte for byte, one BEGIN/COMMIT each
    assert all(s.params == () for s in sent)  # COPY and merge are literal SQL: nothing bound
    tweets = [s.sql for s in sent[:expected.index(COMMIT) + 1]]
    assert [s.status for s in sent[4:len(tweets)]] == [core.IDLE_IN_TRANSACTION] * (len(tweets) - 4)
    manifest = lake.url(files["tweets"].manifests["parquet"])
    assert re.match(rf"""COPY "?stg_tweets"? FROM '{re.escape(manifest)}'\s+WITH CREDENTIALS AS """
                    rf"'aws_iam_role={ROLE}'\s+FORMAT AS PARQUET", tweets[5])
    assert tweets[4].startswith('CREATE TEMPORARY TABLE "stg_tweets" (\n')
    assert sum(s.startswith(f'DELETE FROM "{SCHEMA}"."tweets" USING "stg_tweets" s WHERE ') for s in tweets) == 1
    assert sum(s.startswith(f'INSERT INTO "{SCHEMA}"."tweets" (') for s in tweets) == 1
    users = results["users"]
    assert (users.staged, users.updated, users.older, users.removed) == (staged, 2, 1, 3)
    assert (users.new, users.total) == (staged - 1 - 2, 44 + staged)
    assert (results["tweets"].new, results["tweets"].total) == (30, 30)


def test_bound_parameters_reach_the_server_as_dollar_placeholders(wire, redshift) -> None:
    warehouse = redshift()
    start = connected(wire, warehouse)
    value = "it's a \\ 100% \"value\""
    assert warehouse.query("SELECT :v AS v, :v AS w, :n AS n", {"v": value, "n": 7}) == []
    sent = wire.statements[start:]
    assert [s.sql for s in sent] == [*CHECKOUT, BEGIN, "SELECT $1 AS v, $2 AS w, $3 AS n", ROLLBACK]
    assert sent[4].params == (value.encode(), value.encode(), b"\x00\x07")  # text verbatim; int2 in binary
    assert sent[4].param_oids == (RedshiftOID.UNKNOWN, RedshiftOID.UNKNOWN, RedshiftOID.SMALLINT)


def test_ensure_tables_is_one_transaction_with_the_schema_bound(wire, redshift) -> None:
    script_catalog(wire, {("users", "location"): None})
    warehouse = redshift()
    start = connected(wire, warehouse)

    warehouse.ensure_tables()

    sent = wire.statements[start:]
    lookup = next(s for s in sent if "information_schema" in s.sql)
    creates = [t.create_sql("redshift", SCHEMA) for t in LOAD_TABLES]
    location = TABLES["users"].column("location")
    assert [s.sql for s in sent] == [
        *CHECKOUT, BEGIN, f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"', *creates, lookup.sql,
        f'ALTER TABLE "{SCHEMA}"."users" ADD COLUMN "location" {location.sql_type("redshift")}', COMMIT]
    assert re.search(r'"?table_schema"? = \$1 ', lookup.sql) and SCHEMA not in lookup.sql
    assert (lookup.params, lookup.param_oids) == ((SCHEMA.encode(),), (RedshiftOID.UNKNOWN,))


def test_widening_a_varchar_runs_outside_a_transaction_block(wire, redshift) -> None:
    script_catalog(wire, {("users", "location"): 100})
    warehouse = redshift()
    start = connected(wire, warehouse)

    warehouse.ensure_tables()

    sent = wire.statements[start:]
    widen = [i for i, s in enumerate(sent) if re.match(r'ALTER TABLE .* ALTER COLUMN "location" TYPE', s.sql)]
    assert len(widen) == 1
    assert sent[widen[0]].status == core.IDLE  # Redshift: "cannot run inside a transaction block"
    assert ROLLBACK not in [s.sql for s in sent[widen[0]:]]


@pytest.mark.parametrize("char", ["\\", "'"], ids=["backslash", "quote"])
def test_copy_literals_with_backslash_or_quote_arrive_exactly_as_compiled(wire, redshift, day_files, char) -> None:
    lake, files = day_files
    warehouse = redshift(CopyOptions.for_format("csv", accept_inv_chars=char))
    script_load(wire, files)
    warehouse.load_day(lake, files["tweets"])
    compiled = warehouse.copy_statement(lake, files["tweets"], TABLES["tweets"]).sql  # engine connected
    copy = next(s for s in wire.statements if s.sql.startswith("COPY"))
    assert copy.raw == compiled.encode() and copy.params == ()
    assert "NULL AS '\\0'" in copy.sql  # one backslash, as Redshift documents the NUL field
    literal = {"\\": "'\\\\'", "'": "''''"}[char]  # backslash escaped, as Redshift reads string literals
    assert f"ACCEPTINVCHARS AS {literal}\n" in copy.sql


def test_copy_text_does_not_depend_on_whether_the_engine_has_connected(wire, redshift, day_files) -> None:
    lake, files = day_files
    warehouse = redshift(CopyOptions.for_format("csv", accept_inv_chars="\\"))
    script_load(wire, files)
    before = warehouse.copy_statement(lake, files["tweets"], TABLES["tweets"]).sql  # not connected yet
    warehouse.load_day(lake, files["tweets"])
    assert next(s.sql for s in wire.statements if s.sql.startswith("COPY")) == before


def test_failed_copy_rolls_back_that_table_only_and_explains_from_the_load_errors(
    wire, redshift, day_files
) -> None:
    lake, files = day_files
    warehouse = redshift()
    script_load(wire, files)
    wire.answer(r'^COPY "?stg_users\b', error=LOAD_FAILED)
    key = files["users"].parquet[0].key
    wire.answer(r"sys_load_error_detail", [("btrim", TEXT), ("line_number", RedshiftOID.BIGINT),
                                           ("btrim", TEXT), ("btrim", TEXT), ("btrim", TEXT)],
                [(lake.url(key), 3, "username", "varchar", "String length exceeds DDL length")])
    start = connected(wire, warehouse)

    warehouse.load_day(lake, files["tweets"])
    with pytest.raises(WarehouseError) as caught:
        warehouse.load_day(lake, files["users"])

    sql = wire.sql()[start:]
    tweets, users = sql[:sql.index(COMMIT) + 1], sql[sql.index(COMMIT) + 1:]
    assert tweets[:3] == CHECKOUT and tweets.count(BEGIN) == 2 and tweets[-1] == COMMIT
    assert [s.split(None, 1)[0] for s in users] == ["begin", "SELECT", ROLLBACK, "begin", "CREATE", "COPY",
                                                   ROLLBACK, "begin", "SELECT", ROLLBACK]
    assert COMMIT not in users and "sys_load_error_detail" in users[-2]
    message = str(caught.value)
    assert "nothing was committed" in message and f"{lake.url(key)} line 3, column username" in message
    assert ACCOUNT not in message


def test_assume_role_error_does_not_reveal_the_account_id(wire, redshift, day_files) -> None:
    """Redshift's answer names two ARNs with the account id (the role's and the cluster user's)."""
    lake, files = day_files
    warehouse = redshift()
    script_load(wire, files)
    wire.answer(r"^COPY ", error=ASSUME_FAILED)
    with pytest.raises(WarehouseError) as caught:
        warehouse.load_day(lake, files["users"])
    assert COMMIT not in wire.sql() and wire.sql()[-1] == ROLLBACK
    assert "not authorized to assume IAM Role" in str(caught.value)
    assert ACCOUNT not in str(caught.value)


def test_statement_timeout_is_explained_as_such(wire, redshift, day_files) -> None:
    lake, files = day_files
    warehouse = redshift()
    script_load(wire, files)
    wire.answer(r"^COPY ", error={"C": "57014", "M": "Query (4242) cancelled on user's request"})
    with pytest.raises(WarehouseError) as caught:
        warehouse.load_day(lake, files["users"])
    assert wire.sql()[-1] == ROLLBACK
    assert "statement_timeout_seconds = 1800" in str(caught.value)


def test_default_url_asks_for_tls_and_a_refusal_fails_the_connect(wire) -> None:
    """Production URLs carry no `ssl=false`: the driver asks for TLS (verify-full) and stops when refused."""
    url = engine_url(f"redshift+redshift_connector://loader@127.0.0.1:{wire.port}/dev", "pw", None)
    warehouse = RedshiftWarehouse(url, SCHEMA, CopyAuthorization(iam_role_arn=ROLE))
    try:
        with pytest.raises(sa.exc.DBAPIError, match="Server refuses SSL"):
            warehouse.query("SELECT 1")
    finally:
        warehouse.close()
    with warnings.catch_warnings():  # redshift_connector leaves the refused socket open: collect it now
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert wire.ssl_requests == 1 and wire.startups == [] and wire.statements == []


def test_the_double_keeps_transaction_status_on_the_simple_query_protocol(wire) -> None:
    """The double itself, by hand: psql-style clients send simple Queries (redshift_connector never does)."""
    wire.answer("^boom$", error={"C": "42601", "M": "syntax error at or near \"boom\""})
    password_please = (core.AUTHENTICATION_REQUEST, i_pack(AUTH_CLEARTEXT))
    with socket.create_connection(("127.0.0.1", wire.port)) as sock, sock.makefile("rb") as replies:
        def send(code: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
            sock.sendall(code + i_pack(len(body) + 4) + body)
            got = []
            while not got or got[-1][0] != core.READY_FOR_QUERY and got[-1] != password_please:
                head = replies.read(5)
                got.append((head[:1], replies.read(int.from_bytes(head[1:]) - 4)))
            return got

        sock.sendall(i_pack(8) + i_pack(SSL_REQUEST))
        assert replies.read(1) == b"N"
        startup = i_pack(PROTOCOL_3) + b"user\0loader\0\0"
        assert send(b"", startup) == [password_please]
        assert send(core.PASSWORD, b"pw\0")[-1] == (core.READY_FOR_QUERY, core.IDLE)
        assert send(QUERY, b"BEGIN\0") == [(core.COMMAND_COMPLETE, b"BEGIN\0"), (core.READY_FOR_QUERY, b"T")]
        schema = send(QUERY, b"select current_schema()\0")
        assert [c for c, _ in schema] == [core.ROW_DESCRIPTION, core.DATA_ROW, core.COMMAND_COMPLETE,
                                          core.READY_FOR_QUERY]
        assert schema[1][1].endswith(b"public") and schema[-1][1] == b"T"
        assert [c for c, _ in send(QUERY, b"boom\0")] == [core.ERROR_RESPONSE, core.READY_FOR_QUERY]
        assert send(QUERY, b"SELECT 1\0")[-1][1] == b"E"  # refused: the transaction failed
        assert send(QUERY, b"commit\0") == [(core.COMMAND_COMPLETE, b"ROLLBACK\0"), (core.READY_FOR_QUERY, b"I")]
    assert wire.sql() == ["BEGIN", "select current_schema()", "boom", "SELECT 1", "commit"]
