"""A minimal PostgreSQL frontend (protocol 3.0) that loads a plain dump statement by statement.

Why not psql: psql runs backslash meta-commands (``\\!``, ``\\o |cmd``, ``\\copy ...
program``, backticks) wherever its own lexer sees a backslash, and that lexer follows the
server's ``client_encoding`` (psqlscan.l psqlscan_prepare_buffer hides the byte after an
SJIS/BIG5/GBK/UHC/GB18030/JOHAB lead byte). A dump that changes the encoding from inside
a function body made psql see a ``\\!`` line that our lexer saw inside a string. This
client has no meta-commands at all: a backslash line is SQL text the server refuses.

Only what the load needs, from the protocol documentation (protocol-flow.html,
protocol-message-formats.html) and the server's side of it:

* startup with ``user``, ``database``, ``client_encoding``; only AuthenticationOk is
  accepted (the restore role logs in by ``trust`` on the private socket);
* every statement goes through the extended protocol (Parse/Bind/Execute/Sync): the
  server refuses a Parse message holding more than one statement ("cannot insert
  multiple commands into a prepared statement", postgres.c exec_parse_message), so the
  server never runs two statements where our lexer saw one;
* COPY FROM STDIN: CopyData, CopyDone, then Sync again, because the server ignores a
  Sync that arrives during copy-in (src/backend/commands/copyfromparse.c CopyGetData:
  "Ignore Flush/Sync for the convenience of client libraries (such as libpq)");
* rows, notices and COPY TO data are read and dropped without being kept (bounded
  memory whatever a statement prints); an error keeps only its SQLSTATE and severity
  (the message text quotes the dump);
* every ParameterStatus goes to ``on_parameter`` before anything else is sent: the
  caller aborts the load when the client encoding changes;
* past the per-statement deadline a CancelRequest is sent and :class:`Deadline` raised.
"""
from __future__ import annotations

import re
import socket
import struct
import time

PROTOCOL_VERSION = 3 << 16
CANCEL_REQUEST_CODE = 80877102
COPY_CHUNK = 1 << 16
SMALL_MESSAGE = 1 << 20         # any message we keep (not rows) must fit in this
_SQLSTATE = re.compile(rb"[0-9A-Z]{5}")


class WireError(Exception):
    """The server or the socket did something the load cannot go on from."""


class ServerError(WireError):
    """An ErrorResponse: only the SQLSTATE and the (non-localized) severity are kept."""

    def __init__(self, sqlstate: str, severity: str):
        super().__init__(f"{severity} {sqlstate}")
        self.sqlstate, self.severity = sqlstate, severity


class Deadline(WireError):
    """A statement ran past its wall-time budget (it was cancelled)."""


class Connection:
    def __init__(self, socket_path: str, user: str, database: str, *, client_encoding: str = "UTF8",
                 on_parameter=None, timeout: float = 60.0):
        self.socket_path = socket_path
        self.parameters: dict[str, str] = {}
        self.on_parameter = on_parameter
        self.backend_key: bytes | None = None
        self.rows = 0
        self.row_bytes = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._deadline = time.monotonic() + timeout
        self._buffer = bytearray()
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(socket_path)
            body = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in (
                ("user", user), ("database", database), ("client_encoding", client_encoding),
                ("application_name", "restoredrill-load"))) + b"\0"
            self._sock.sendall(struct.pack("!ii", len(body) + 8, PROTOCOL_VERSION) + body)
            self._until_ready(timeout)
        except OSError as exc:
            raise WireError(f"cannot talk to the throwaway server: {exc.strerror or exc}") from None

    def close(self) -> None:
        try:
            self._sock.sendall(b"X\0\0\0\4")
        except OSError:
            pass
        self._sock.close()

    # -- sending --------------------------------------------------------------------
    def execute(self, sql: bytes, copy_data=None, *, timeout: float) -> int:
        """Run one statement; ``copy_data`` (bytes) is sent when the server asks for COPY
        data. Returns the number of rows the statement printed (dropped)."""
        if b"\0" in sql:
            raise WireError("a statement holds a NUL byte")
        self.rows = 0
        message = (_message(b"P", b"\0" + sql + b"\0" + b"\0\0") + _message(b"B", b"\0\0" + b"\0" * 6)
                   + _message(b"E", b"\0" + b"\0" * 4) + _message(b"S", b""))
        try:
            self._sock.sendall(message)
            self._until_ready(timeout, copy_data=copy_data)
        except OSError as exc:
            raise WireError(f"the connection to the throwaway server broke: {exc.strerror or exc}") from None
        return self.rows

    def _until_ready(self, timeout: float, copy_data=None) -> None:
        self._deadline = time.monotonic() + timeout
        error: ServerError | None = None
        while True:
            kind, body = self._read_message()
            if kind == b"Z":
                if error is not None:
                    raise error
                return
            if kind == b"E":
                error = error or _error(body)
            elif kind == b"S":
                name, _, rest = body.partition(b"\0")
                value = rest.split(b"\0", 1)[0]
                key, text = name.decode("ascii", "replace"), value.decode("utf-8", "replace")
                self.parameters[key] = text
                if self.on_parameter is not None:
                    self.on_parameter(key, text)     # may raise: nothing more is sent
            elif kind == b"R":
                if body[:4] != b"\0\0\0\0":
                    raise WireError("the throwaway server asked for a password (the restore role "
                                    "logs in by trust)")
            elif kind == b"K":
                self.backend_key = bytes(body[:8])
            elif kind == b"G":
                self._send_copy(copy_data)
                copy_data = None
            elif kind == b"W":
                raise WireError("the server started a COPY BOTH stream")

    def _send_copy(self, data) -> None:
        if data is None:
            # the server waits for data our lexer did not see: refuse to guess
            self._sock.sendall(_message(b"f", b"no COPY data in the dump\0") + _message(b"S", b""))
            raise WireError("the server asked for COPY data where the dump has none")
        view = memoryview(data)
        for start in range(0, len(view), COPY_CHUNK):
            self._sock.sendall(_message(b"d", view[start:start + COPY_CHUNK]))
        self._sock.sendall(_message(b"c", b"") + _message(b"S", b""))

    # -- reading --------------------------------------------------------------------
    def _read_message(self) -> tuple[bytes, bytes]:
        header = self._read(5)
        kind, length = header[:1], struct.unpack("!i", header[1:])[0] - 4
        if length < 0:
            raise WireError("the server sent a malformed message")
        if kind in (b"D", b"d", b"N", b"A", b"T"):      # rows, COPY TO data, notices: dropped
            if kind == b"D":
                self.rows += 1
                self.row_bytes += length
            self._skip(length)
            return kind, b""
        if length > SMALL_MESSAGE:
            raise WireError("the server sent an oversized message")
        return kind, self._read(length)

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._receive()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _skip(self, count: int) -> None:
        while count:
            if not self._buffer:
                self._receive()
            taken = min(count, len(self._buffer))
            del self._buffer[:taken]
            count -= taken

    def _receive(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._cancel()
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(COPY_CHUNK)
        except socket.timeout:
            chunk = self._cancel()
        if not chunk:
            raise WireError("the throwaway server closed the connection")
        self._buffer += chunk

    def _cancel(self) -> bytes:
        """CancelRequest on a new connection (protocol-flow.html, "Canceling Requests")."""
        if self.backend_key is not None:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as cancel:
                    cancel.settimeout(5)
                    cancel.connect(self.socket_path)
                    cancel.sendall(struct.pack("!ii", 16, CANCEL_REQUEST_CODE) + self.backend_key)
            except OSError:
                pass
        raise Deadline("the statement ran past its time budget and was cancelled")


def _message(kind: bytes, body) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + bytes(body)


def _error(body: bytes) -> ServerError:
    """Fields of an ErrorResponse: V (severity, never localized) and C (SQLSTATE) only."""
    fields = {}
    for field in body.split(b"\0"):
        if field[:1] in (b"V", b"S", b"C") and field[:1] not in fields:
            fields[field[:1]] = field[1:]
    state = fields.get(b"C", b"")
    severity = fields.get(b"V") or fields.get(b"S") or b"ERROR"
    return ServerError(state.decode() if _SQLSTATE.fullmatch(state) else "?????",
                       severity.decode() if severity in (b"ERROR", b"FATAL", b"PANIC") else "ERROR")
