"""The HTTPS servers: TLS, token auth, routing, parameter validation, answers, faults.

One ``ApiServer`` per API (PVE, PBS) on 127.0.0.1 and a free port. A request goes:
fault hook -> token (401) -> path safety (400) -> route (PVE 501 ``Method 'GET /x'
not implemented``, PBS 404 ``Path '/api2/json/x' not found.``) -> the method's
``permissions`` (403, ``schema_permissions``; upstream checks them before the parameters)
-> parameters checked against the official schema when present, else against the route's
declaration in code (400) -> handler (its finer checks and filters raise 403 or drop
items) -> ``{"data": ...}``.
Error answers follow the wire: PVE puts the message in the HTTP reason phrase and
answers ``{"data": null[, "errors": {...}]}``; PBS answers the message as the body.
In strict mode every request and response is also checked against the schema and
each departure is recorded in ``violations`` (the tests hold the list of known wire
deviations). Authorization headers and bodies are never logged.
"""
from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from restoredrill.lab.proxmox.certs import TlsIdentity
from restoredrill.lab.proxmox.faults import PROXY_REASONS, Faults
from restoredrill.lab.proxmox.names import UnsafeValue
from restoredrill.lab.proxmox.permissions import AuthFailed, PermissionDenied, TokenRegistry
from restoredrill.lab.proxmox.routing import ApiError, Call, Router
from restoredrill.lab.proxmox.schema import ApiSchemas
from restoredrill.lab.proxmox.schema_permissions import check_permissions, permissions_for
from restoredrill.lab.proxmox.validate import ParamErrors, check_params, check_value

log = logging.getLogger("restoredrill.lab.proxmox.http")
API_PREFIX = "/api2/json"
MAX_BODY = 1024 * 1024
RESET = "reset"
JSON_TYPE = "application/json;charset=UTF-8"


@dataclass(frozen=True)
class SchemaViolation:
    api: str
    method: str
    template: str
    where: str          # "request", "response" or "route"
    detail: str

    def __str__(self) -> str:
        return f"{self.api} {self.method} {self.template} [{self.where}]: {self.detail}"


Answer = tuple  # (status, reason phrase, body[, content type]); JSON unless a type is given


@dataclass(frozen=True)
class RawDownload:
    """What a DOWNLOAD method (schema ``"method": "DOWNLOAD"``, e.g. PBS
    ``/admin/datastore/{store}/download``) answers: the file's bytes as they are, not JSON."""

    content: bytes
    content_type: str = "application/octet-stream"


class ApiServer:
    """One API (``pve`` or ``pbs``) served over HTTPS on loopback."""

    def __init__(self, api: str, router: Router, tokens: TokenRegistry, identity: TlsIdentity,
                 schemas: ApiSchemas, *, use_schema: bool = True, strict: bool = False,
                 faults: Faults | None = None, auth_failure_delay: float = 0.0):
        self.api = api
        self.router = router
        self.tokens = tokens
        self.identity = identity
        self.schemas = schemas
        self.use_schema = use_schema and schemas.available
        self.strict = strict
        self.faults = faults
        self.auth_failure_delay = auth_failure_delay
        self.violations: list[SchemaViolation] = []
        self.served: Counter[tuple[str, str]] = Counter()
        self.connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: _TlsServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> ApiServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.identity.cert_file, self.identity.key_file)
        self._server = _TlsServer(self, context)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.1}, name=f"{self.api}-api-server", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop accepting, cut open keep-alive connections, join every handler thread."""
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            open_connections = list(self.connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(5)
        self._server = None

    def track(self, connection: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self.connections.add(connection)
            else:
                self.connections.discard(connection)

    # --- one request -------------------------------------------------------------------
    def dispatch(self, method: str, raw_path: str, headers: Any, body: bytes) -> Answer | str:
        url = urlsplit(raw_path)
        if url.path != API_PREFIX and not url.path.startswith(API_PREFIX + "/"):
            return self._not_found(method, url.path, url.path)
        relative = url.path[len(API_PREFIX):].strip("/")
        segments = [unquote(part) for part in relative.split("/")] if relative else []
        shown = "/" + "/".join(segments)
        if self.faults is not None:
            action = self.faults.on_request(self.api, method, shown)
            if action is not None:
                return self._injected(action)
        try:
            token = self.tokens.authenticate(headers.get("Authorization"))
        except AuthFailed as exc:
            if self.auth_failure_delay:
                time.sleep(self.auth_failure_delay)
            return self._unauthorized(str(exc))
        try:
            answer = self._serve(method, segments, shown, url.query, headers, body, token)
        except (ApiError, ParamErrors, PermissionDenied, UnsafeValue) as exc:
            answer = self._error(exc)
        except Exception as exc:  # an unexpected failure is a 500 with the message
            log.debug("%s %s failed", method, shown, exc_info=True)
            answer = self._error(ApiError(500, str(exc) or type(exc).__name__))
        if self.faults is not None:     # served (a POST applied), then the answer is lost
            late = self.faults.after_request(self.api, method, shown)
            if late is not None:
                return self._injected(late)
        return answer

    def _injected(self, action: str) -> Answer | str:
        """A fault's answer: a reset connection, or the status a proxy in front of the API
        gives (502/503/504) or the server's own 500."""
        if action == RESET:
            return RESET
        status = int(action)
        reason = PROXY_REASONS.get(action) or _STANDARD_REASONS.get(status, "Error")
        return self._error(ApiError(status, f"{reason} (fault injected by the test double)"))

    def _serve(self, method, segments, shown, query, headers, body, token) -> Answer:
        if any(s in ("", ".", "..") or "/" in s or "\0" in s for s in segments):
            raise ApiError(400, "Parameter verification failed.",
                           {"path": f"invalid path component in '{shown}'"})
        route, path_params, _ = self.router.find(method, segments)
        if route is None:
            template = self.schemas.match_path(self.api, segments) or shown
            self._violation(method, template, "route", f"not served: {method} {shown}")
            return self._not_found(method, shown, API_PREFIX + shown)
        raw = parse_parameters(query, headers, body)
        for name, value in path_params.items():
            raw[name] = [value]
        self._check_permissions(method, route.template, raw, path_params, token)
        declared = self.schemas.parameters(self.api, route.template, method) \
            if self.use_schema else None
        if self.strict and self.schemas.available and \
                self.schemas.method(self.api, route.template, method) is None:
            self._violation(method, route.template, "route", "route is not in the schema")
        try:
            typed = check_params(declared if declared is not None else route.params, raw)
        except ParamErrors as exc:
            self._violation(method, route.template, "request", json.dumps(exc.errors))
            raise
        call = Call(self.api, method, shown, route.template, typed, token)
        with self._lock:
            self.served[(method, route.template)] += 1
        data = route.handler(call)
        if isinstance(data, RawDownload):    # the body is the file; the schema's "returns" is null
            return 200, "OK", data.content, data.content_type
        if self.strict and self.schemas.available:
            returns = self.schemas.returns(self.api, route.template, method)
            for problem in check_value(returns, data, booleans_as_ints=self.api == "pve"):
                self._violation(method, route.template, "response", problem)
        document = {"data": data, **call.attributes}
        return 200, "OK", json.dumps(document).encode()

    def _check_permissions(self, method: str, template: str, raw: dict[str, list[Any]],
                           path_params: dict[str, str], token) -> None:
        """The method's ``permissions`` before anything else of the request is looked at
        (pve-manager ``PVE/HTTPServer.pm`` rest_handler: check_api2_permissions on the raw
        parameters, then the handler verifies them; proxmox-rest-server ``rest.rs``:
        check_api_permission on the path parameters)."""
        acl = self.router.acl
        rule = permissions_for(self.schemas if self.use_schema else _NO_SCHEMAS, self.api,
                               method, template, acl.release())
        params = {name: str(values[0]) for name, values in raw.items()
                  if values and not isinstance(values[0], (list, dict))}
        check_permissions(self.api, rule, token, params, path_params, acl)

    def _violation(self, method: str, template: str, where: str, detail: str) -> None:
        if self.strict:
            with self._lock:
                self.violations.append(SchemaViolation(self.api, method, template, where, detail))

    # --- answers -----------------------------------------------------------------------
    def _not_found(self, method: str, shown: str, full: str) -> Answer:
        if self.api == "pve":
            return self._error(ApiError(501, f"Method '{method} {shown}' not implemented"))
        return self._error(ApiError(404, f"Path '{full}' not found."))

    def _unauthorized(self, message: str) -> Answer:
        if self.api == "pve":
            return 401, reason_phrase(message), b""
        return 401, "Unauthorized", message.encode()

    def _error(self, exc: Exception) -> Answer:
        status, message, errors = error_parts(exc, self.api)
        if self.api == "pve":
            document: dict[str, Any] = {"data": None}
            if errors:
                document["errors"] = errors
            return status, reason_phrase(message), json.dumps(document).encode()
        if errors:
            message = "parameter verification errors\n\n" + "".join(
                f"parameter '{name}': {text}\n" for name, text in errors.items())
        return status, _STANDARD_REASONS.get(status, "Error"), message.encode()


def error_parts(exc: Exception, api: str) -> tuple[int, str, dict[str, str]]:
    if isinstance(exc, ApiError):
        return exc.status, exc.message, exc.errors
    if isinstance(exc, ParamErrors):
        return 400, "Parameter verification failed.", exc.errors
    if isinstance(exc, UnsafeValue):
        return 400, "Parameter verification failed.", {exc.param: exc.message}
    if isinstance(exc, PermissionDenied):
        return exc.status, str(exc), {}
    return 500, str(exc), {}


_NO_SCHEMAS = ApiSchemas()
_STANDARD_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                     404: "Not Found", 500: "Internal Server Error", 501: "Not Implemented",
                     502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def reason_phrase(message: str) -> str:
    """PVE sends the error text as the reason phrase: one printable latin-1 line."""
    line = " ".join(message.split())
    return "".join(c if 32 <= ord(c) < 256 and c != "\x7f" else "?" for c in line)[:512] or "Error"


def parse_parameters(query: str, headers: Any, body: bytes) -> dict[str, list[Any]]:
    """Query string plus a form or JSON body; repeated keys make lists (array params)."""
    raw: dict[str, list[Any]] = {k: list(v) for k, v in
                                 parse_qs(query, keep_blank_values=True).items()}
    if not body:
        return raw
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            document = json.loads(body)
        except ValueError:
            raise ApiError(400, "Parameter verification failed.",
                           {"body": "request body is not valid JSON"}) from None
        if not isinstance(document, dict):
            raise ApiError(400, "Parameter verification failed.",
                           {"body": "request body must be a JSON object"})
        for key, value in document.items():
            raw.setdefault(key, []).append(value)
        return raw
    for key, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
        raw.setdefault(key, []).extend(values)
    return raw


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    disable_nagle_algorithm = True    # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def setup(self) -> None:
        super().setup()
        self.server.app.track(self.connection, True)
        try:
            self.request.do_handshake()
        except BaseException:
            self.server.app.track(self.connection, False)
            raise

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.app.track(self.connection, False)

    def version_string(self) -> str:
        return "pve-api-daemon/3.0" if self.server.app.api == "pve" else "proxmox-backup-api"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        answer = self.server.app.dispatch(self.command, self.path, self.headers, body)
        if answer == RESET:
            self.request.reset_on_close = True
            self.close_connection = True
            return
        status, reason, payload, *content_type = answer
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type[0] if content_type else JSON_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # path only, never headers
        log.debug("%s %s", self.server.app.api, format % args)


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, app: ApiServer, context: ssl.SSLContext):
        self.app = app
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self):
        connection, address = super().get_request()
        return self.context.wrap_socket(connection, server_side=True,
                                        do_handshake_on_connect=False), address

    def shutdown_request(self, request) -> None:
        if getattr(request, "reset_on_close", False):
            request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.close()
            return
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        log.debug("%s connection from %s failed", self.app.api, client_address, exc_info=True)
