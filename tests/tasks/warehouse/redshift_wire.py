"""A test double for Amazon Redshift's wire protocol, as redshift_connector 2.2 speaks it, on loopback.

No Redshift can run here and redshift_connector cannot talk to a stock PostgreSQL (FIELD_NOTES), so
`RedshiftWire` serves the PostgreSQL v3 frontend/backend protocol the way Redshift answers the driver:
startup (an SSLRequest refused with 'N', cleartext password, the ParameterStatus values the driver parses:
`server_version` 8.0.2, `server_protocol_version` granting the client's request, `client_encoding` UTF8,
...; BackendKeyData); the extended protocol the driver uses for every statement (Parse/Describe/Sync then
Bind/Execute/Sync, Close, Flush; named prepared statements; RowDescription with Redshift's extended
metadata; text or binary results as each Bind asks) and the simple Query; the transaction status in
ReadyForQuery ('I' idle, 'T' in a transaction, 'E' failed: the extended protocol then skips messages until
Sync, and only COMMIT/ROLLBACK are accepted until the transaction ends).

It RECORDS every frontend message (type byte, payload) and every executed statement (SQL as received,
bound values and type OIDs, the transaction status it arrived in). Answers are scripted: the newest
`answer` whose regex is found in the SQL gives columns and rows (or a callable making rows from the match)
or an ErrorResponse; any other statement completes with no rows. Not modelled: SQL itself (nothing is
parsed or stored), COPY's effects, SSL, MD5/SASL/IAM authentication, cancellation, notices.
"""

from __future__ import annotations

import re
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from redshift_connector import core
from redshift_connector.config import ClientProtocolVersion
from redshift_connector.utils import FC_BINARY, NULL_BYTE, h_pack, i_pack, q_pack
from redshift_connector.utils.oids import RedshiftOID
from redshift_connector.utils.type_utils import bool_send

SSL_REQUEST, PROTOCOL_3 = 80877103, 196608  # hard-coded in redshift_connector's Connection too
QUERY = b"Q"  # the simple Query: redshift_connector never sends it
AUTH_OK, AUTH_CLEARTEXT = 0, 3
VERSION = ("PostgreSQL 8.0.2 on i686-pc-linux-gnu, compiled by GCC gcc (GCC) 3.4.2 20041017 "
           "(Red Hat 3.4.2-6.fc3), Redshift 1.0.77467")
BINARY = {RedshiftOID.BIGINT: q_pack, RedshiftOID.INTEGER: i_pack, RedshiftOID.SMALLINT: h_pack,
          RedshiftOID.BOOLEAN: bool_send}
SIZES = {RedshiftOID.BIGINT: 8, RedshiftOID.INTEGER: 4, RedshiftOID.SMALLINT: 2, RedshiftOID.BOOLEAN: 1}
TX_BEGIN = re.compile(r"\s*(BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)
TX_END = re.compile(r"\s*(COMMIT|END|ROLLBACK|ABORT)\b", re.IGNORECASE)
COUNTED = {"INSERT": "INSERT 0 0", "DELETE": "DELETE 0", "UPDATE": "UPDATE 0"}
ABORTED = {"C": "25P02", "M": "current transaction is aborted, commands ignored until end of transaction block"}
Rows = Sequence[Sequence[Any]] | Callable[[re.Match], Sequence[Sequence[Any]]]


@dataclass(frozen=True)
class Message:
    connection: int
    type: bytes
    payload: bytes


@dataclass(frozen=True)
class Statement:
    connection: int
    raw: bytes  # the query text as it arrived
    params: tuple[bytes | None, ...] = ()
    param_oids: tuple[int, ...] = ()
    status: bytes = core.IDLE  # the transaction status it arrived in: IDLE, IDLE_IN_TRANSACTION, ...

    @property
    def sql(self) -> str:
        return self.raw.decode()


@dataclass(frozen=True)
class Answer:
    pattern: re.Pattern
    columns: Sequence[tuple[str, int]] = ()  # (name, RedshiftOID)
    rows: Rows = ()
    error: dict[str, str] | None = None  # ErrorResponse fields: {"C": sqlstate, "M": message, "D": detail}


class RedshiftWire:
    """The server: `start()`, point a `redshift+redshift_connector://...:port` URL at it, `stop()`."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.statements: list[Statement] = []
        self.startups: list[dict[str, str]] = []
        self.ssl_requests = 0
        self.failures: list[Exception] = []  # the double's own errors (a script's callable raising ...)
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        # What the SQLAlchemy dialect asks on first connect, and its pool's pre-ping.
        self.answer(r"^select pg_catalog\.version\(\)$", [("version", RedshiftOID.VARCHAR)], [(VERSION,)])
        self.answer(r"^select current_schema\(\)$", [("current_schema", RedshiftOID.NAME)], [("public",)])
        self.answer(r"^show transaction isolation level$", [("transaction_isolation", RedshiftOID.TEXT)],
                    [("serializable",)])
        self.answer(r"^SELECT 1$", [("?column?", RedshiftOID.INTEGER)], [(1,)])

    def answer(self, pattern: str, columns: Sequence[tuple[str, int]] = (), rows: Rows = (),
               error: dict[str, str] | None = None) -> None:
        """Script a reply; the newest answer whose `pattern` is found (`re.search`) in the SQL wins."""
        self._answers.insert(0, Answer(re.compile(pattern, re.IGNORECASE | re.DOTALL), columns, rows, error))

    def find(self, sql: str) -> tuple[Answer, re.Match | None]:
        for answer in self._answers:
            if match := answer.pattern.search(sql):
                return answer, match
        return Answer(re.compile("")), None

    def sql(self) -> list[str]:
        return [s.sql for s in self.statements]

    def record(self, item: Message | Statement) -> None:
        with self._lock:
            (self.messages if isinstance(item, Message) else self.statements).append(item)

    def start(self) -> RedshiftWire:
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Session)
        self._server.wire = self  # type: ignore[attr-defined]
        self._server.daemon_threads = False  # server_close() joins every session thread
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # ends sessions a client left open
        self._server.server_close()
        self._thread.join()


class _Session(socketserver.StreamRequestHandler):
    """One client connection: startup, then messages until Terminate or end of stream."""

    def setup(self) -> None:
        super().setup()
        self.wire: RedshiftWire = self.server.wire  # type: ignore[attr-defined]
        with self.wire._lock:
            self.wire._sockets.append(self.request)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle stalls on small replies
        self.id, self.status, self.skip_until_sync = self.client_address[1], core.IDLE, False
        self.prepared: dict[bytes, tuple[bytes, tuple[int, ...]]] = {}
        self.portals: dict[bytes, tuple[bytes, tuple[bytes | None, ...], tuple[int, ...]]] = {}
        self.protocol, self.out = ClientProtocolVersion.BASE_SERVER, bytearray()

    def send(self, code: bytes, data: bytes = b"") -> None:
        self.out += core.create_message(code, data)

    def flush(self, _: bytes = b"") -> None:  # on Flush and Sync, as a server does
        self.request.sendall(self.out)
        self.out.clear()

    def read(self) -> tuple[bytes, bytes] | None:
        head = self.rfile.read(5)
        if len(head) < 5:
            return None
        payload = self.rfile.read(struct.unpack("!i", head[1:])[0] - 4)
        self.wire.record(Message(self.id, head[:1], payload))
        return head[:1], payload

    def handle(self) -> None:
        if not self.startup():
            return
        handlers = {core.PARSE: self.parse, core.DESCRIBE: self.describe, core.BIND: self.bind,
                    core.EXECUTE: self.execute, core.SYNC: self.sync, core.CLOSE: self.close,
                    core.FLUSH: self.flush, QUERY: self.query}
        while (message := self.read()) and message[0] != core.TERMINATE:
            if self.skip_until_sync and message[0] != core.SYNC:
                continue
            try:
                handlers[message[0]](message[1])
            except Exception as exc:  # noqa: BLE001 - a bug of the double: tell the client and the test
                self.wire.failures.append(exc)
                self.error({"C": "XX000", "M": f"RedshiftWire failed: {exc!r}"}, message[0] != QUERY)
                if message[0] == QUERY:
                    self.sync(b"")
        self.flush()

    def startup(self) -> bool:
        while len(head := self.rfile.read(8)) == 8:
            length, code = struct.unpack("!ii", head)
            body = self.rfile.read(length - 8)
            if code != SSL_REQUEST:
                break
            self.wire.ssl_requests += 1
            self.request.sendall(b"N")
        else:
            return False
        assert code == PROTOCOL_3, code
        items = body.rstrip(NULL_BYTE).split(NULL_BYTE)
        params = {k.decode(): v.decode() for k, v in zip(items[0::2], items[1::2], strict=True)}
        self.wire.startups.append(params)
        self.send(core.AUTHENTICATION_REQUEST, i_pack(AUTH_CLEARTEXT))
        self.flush()
        if not (reply := self.read()) or reply[0] != core.PASSWORD:
            return False
        self.send(core.AUTHENTICATION_REQUEST, i_pack(AUTH_OK))
        self.protocol = int(params.get("client_protocol_version", ClientProtocolVersion.BASE_SERVER))
        for key, value in {"server_version": "8.0.2", "server_protocol_version": str(self.protocol),
                           "client_encoding": "UTF8", "DateStyle": "ISO, MDY", "TimeZone": "UTC",
                           "integer_datetimes": "on", "is_superuser": "off",
                           "session_authorization": params.get("user", "")}.items():
            self.send(core.PARAMETER_STATUS, key.encode() + NULL_BYTE + value.encode() + NULL_BYTE)
        self.send(core.BACKEND_KEY_DATA, i_pack(self.id) + i_pack(0x5EC12E7))
        self.sync(b"")
        return True

    # --- messages --------------------------------------------------------------------------------------

    def parse(self, data: bytes) -> None:
        name, query, rest = data.split(NULL_BYTE, 2)
        (count,) = struct.unpack_from("!h", rest)
        self.prepared[name] = (query, struct.unpack_from(f"!{count}i", rest, 2))
        self.send(core.PARSE_COMPLETE)

    def describe(self, data: bytes) -> None:
        kind, name = data[:1], data[1:-1]
        stmt, formats = (name, ()) if kind == core.STATEMENT else (self.portals[name][0], self.portals[name][2])
        query, oids = self.prepared[stmt]
        if kind == core.STATEMENT:
            self.send(core.PARAMETER_DESCRIPTION, h_pack(len(oids)) + b"".join(i_pack(o) for o in oids))
        self.describe_rows(self.wire.find(query.decode())[0].columns, formats)

    def bind(self, data: bytes) -> None:
        portal, stmt, rest = data.split(NULL_BYTE, 2)
        at = 2 + 2 * struct.unpack_from("!h", rest)[0]  # past the parameter format codes
        (count,) = struct.unpack_from("!h", rest, at)
        at += 2
        params: list[bytes | None] = []
        for _ in range(count):
            (size,) = struct.unpack_from("!i", rest, at)
            params.append(None if size < 0 else rest[at + 4:at + 4 + size])
            at += 4 + max(size, 0)
        (results,) = struct.unpack_from("!h", rest, at)
        self.portals[portal] = (stmt, tuple(params), struct.unpack_from(f"!{results}h", rest, at + 2))
        self.send(core.BIND_COMPLETE)

    def execute(self, data: bytes) -> None:
        stmt, params, formats = self.portals[data.split(NULL_BYTE, 1)[0]]
        query, oids = self.prepared[stmt]
        self.run(Statement(self.id, query, params, oids, self.status), formats, describe=False)

    def sync(self, _: bytes) -> None:
        self.skip_until_sync = False
        self.send(core.READY_FOR_QUERY, self.status)
        self.flush()

    def close(self, data: bytes) -> None:
        (self.prepared if data[:1] == core.STATEMENT else self.portals).pop(data[1:-1], None)
        self.send(core.CLOSE_COMPLETE)

    def query(self, data: bytes) -> None:
        self.run(Statement(self.id, data.rstrip(NULL_BYTE), status=self.status), (), describe=True)
        self.sync(b"")

    # --- answers ---------------------------------------------------------------------------------------

    def describe_rows(self, columns: Sequence[tuple[str, int]], formats: Sequence[int]) -> None:
        if not columns:
            self.send(core.NO_DATA)
            return
        body = bytearray(h_pack(len(columns)))
        for i, (name, oid) in enumerate(columns):
            fmt = _format(formats, i)
            body += name.encode() + NULL_BYTE + struct.pack("!ihihih", 0, 0, oid, SIZES.get(oid, -1), -1, fmt)
            if self.protocol >= ClientProtocolVersion.EXTENDED_RESULT_METADATA:
                # schema, table, column and catalog names, then the nullable/autoincrement/... flags
                body += NULL_BYTE + NULL_BYTE + name.encode() + NULL_BYTE + NULL_BYTE + h_pack(1)
        self.send(core.ROW_DESCRIPTION, bytes(body))

    def run(self, statement: Statement, formats: Sequence[int], describe: bool) -> None:
        self.wire.record(statement)
        sql = statement.sql
        answer, match = self.wire.find(sql)
        if self.status == core.IDLE_IN_FAILED_TRANSACTION and not TX_END.match(sql):
            answer = Answer(answer.pattern, error=ABORTED)
        if answer.error:
            self.error(answer.error, extended=not describe)
            return
        rows = answer.rows(match) if callable(answer.rows) else answer.rows
        if describe and answer.columns:  # the simple Query describes rows, never sends NoData
            self.describe_rows(answer.columns, ())
        for row in rows:
            self.send(core.DATA_ROW, h_pack(len(row)) + b"".join(
                _encode(value, oid, _format(formats, i))
                for i, (value, (_, oid)) in enumerate(zip(row, answer.columns, strict=True))))
        word = (sql.split(None, 1) or [""])[0].upper()
        tag = COUNTED.get(word, word)
        if TX_BEGIN.match(sql):
            tag, self.status = "BEGIN", core.IDLE_IN_TRANSACTION
        elif TX_END.match(sql):
            tag = "ROLLBACK" if self.status == core.IDLE_IN_FAILED_TRANSACTION else word
            self.status = core.IDLE
        self.send(core.COMMAND_COMPLETE, tag.encode() + NULL_BYTE)

    def error(self, fields: dict[str, str], extended: bool) -> None:
        fields = {"S": "ERROR", **fields}
        self.send(core.ERROR_RESPONSE, b"".join(k.encode() + v.encode() + NULL_BYTE for k, v in fields.items())
                  + NULL_BYTE)
        if self.status == core.IDLE_IN_TRANSACTION:
            self.status = core.IDLE_IN_FAILED_TRANSACTION
        self.skip_until_sync = extended  # the extended protocol skips messages until Sync


def _format(formats: Sequence[int], column: int) -> int:
    """A Bind's result format codes: none (all text), one for all columns, or one per column."""
    return formats[column if len(formats) > 1 else 0] if formats else 0


def _encode(value: Any, oid: int, fmt: int) -> bytes:
    if value is None:
        return i_pack(-1)
    if fmt == FC_BINARY and oid in BINARY:
        data = BINARY[oid](value)
    else:
        data = (("t" if value else "f") if isinstance(value, bool) else str(value)).encode()
    return i_pack(len(data)) + data
