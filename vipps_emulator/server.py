"""The HTTP server: routing, fault injection and the request log.

Three families of paths are served:

* the Vipps API paths (see ``api.ROUTES``), which are logged and can be
  given faults;
* ``/app/...``: the pages that stand in for the Vipps MobilePay app;
* ``/_emulator/...``: the JSON control API for tests in other processes.
"""

import contextlib
import http.server
import logging
import re
import socket
import time
import urllib.parse

from . import api, app_pages, config, control, errors
from .clock import isoformat

_logger = logging.getLogger(__name__)

IMAGES_PATH = "/order-management/v1/images"
# A body over the limit but under this is read and thrown away before the 413,
# so that the client sees the answer rather than a broken connection.
DRAIN_LIMIT = 16 * 1024 * 1024
_TOKEN_IN_QUERY = re.compile(r"(token=)[^&\s]+")


# Request headers kept in the request log; credentials and tokens never are.
LOGGED_HEADERS = (
    "Merchant-Serial-Number",
    "Vipps-System-Name",
    "Vipps-System-Version",
    "Vipps-System-Plugin-Name",
    "Vipps-System-Plugin-Version",
    "Idempotency-Key",
    "Content-Type",
)


class _AnswerDroppedError(Exception):
    """The answer is withheld: the connection is closed without a response."""


class EmulatorHTTPServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that does not wait for its handler threads."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class Handler(http.server.BaseHTTPRequestHandler):
    """Request handler; ``emulator`` is set on a per-emulator subclass."""

    protocol_version = "HTTP/1.1"
    server_version = "VippsEmulator/1.0"
    emulator = None
    # Send each answer in one piece (buffered, flushed per request) and without
    # Nagle's delay, so keep-alive clients do not wait for delayed ACKs.
    wbufsize = -1
    disable_nagle_algorithm = True

    # === plumbing === #

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        """Send the access log to ``logging`` (debug), with tokens masked."""
        _logger.debug(_TOKEN_IN_QUERY.sub(r"\1***", format % args))

    def _body_limit(self, path):
        limit = self.emulator.settings.max_body_bytes
        if path == IMAGES_PATH:
            limit = max(limit, config.IMAGE_BODY_LIMIT)
        return limit

    def _read_body(self, path):
        """Read the request body, at most the path's limit (413 above it)."""
        limit = self._body_limit(path)
        too_large = errors.ApiError(
            413, detail=f"The body is larger than {limit} bytes."
        )
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > DRAIN_LIMIT:
                    raise too_large
                data = self.rfile.read(size)
                if total <= limit:
                    chunks.append(data)
                self.rfile.readline()
            if total > limit:
                raise too_large
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            if length <= DRAIN_LIMIT:
                self._discard(length)
            raise too_large
        return self.rfile.read(length) if length > 0 else b""

    def _discard(self, length):
        while length > 0:
            data = self.rfile.read(min(length, 65536))
            if not data:
                break
            length -= len(data)

    def _send(self, reply):
        body = reply.encoded()
        self.send_response(reply.status)
        if reply.status != 204:
            if body:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and reply.status != 204:
            self.wfile.write(body)

    def _error_reply(self, err, path, style):
        body = err.body(api.instance_of(path), style)
        content_type = (
            "application/json; charset=utf-8"
            if style == errors.ORDER_MANAGEMENT
            else "application/problem+json; charset=utf-8"
        )
        return api.Reply(err.status, body, content_type, err.headers)

    def _drop(self, hang_seconds):
        """Withhold the answer: optionally hang, then close the connection."""
        if hang_seconds:
            self.emulator.stopping.wait(hang_seconds)
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may already be gone
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _AnswerDroppedError()

    # === dispatch === #

    def do_GET(self):  # noqa: N802 - http.server naming
        """Handle GET."""
        self._handle()

    def do_POST(self):  # noqa: N802
        """Handle POST."""
        self._handle()

    def do_PUT(self):  # noqa: N802
        """Handle PUT."""
        self._handle()

    def do_DELETE(self):  # noqa: N802
        """Handle DELETE."""
        self._handle()

    def do_PATCH(self):  # noqa: N802
        """Handle PATCH."""
        self._handle()

    def _handle(self):
        started = time.monotonic()
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query = urllib.parse.parse_qs(split.query)
        is_control = path == "/_emulator" or path.startswith("/_emulator/")
        try:
            raw = self._read_body(path)
        except (ValueError, errors.ApiError) as err:
            error = err if isinstance(err, errors.ApiError) else None
            error = error or errors.ApiError(400, detail="Unreadable request body.")
            self.close_connection = True
            if is_control:
                reply = api.Reply(error.status, {"error": error.detail})
            else:
                reply = self._error_reply(error, path, errors.PROBLEM)
            self._send(reply)
            return
        request = api.Request(
            self.command, path, query, self.headers, raw, client=self.client_address[0]
        )
        try:
            if is_control:
                reply = control.refuse(self.emulator, request) or control.handle(
                    self.emulator, request
                )
            elif path == "/app" or path.startswith("/app/"):
                reply = app_pages.handle(self.emulator, request)
                self._log(request, "app", reply.status, started)
            else:
                reply = self._api(request, started)
        except _AnswerDroppedError:
            return
        except Exception:  # a bug in the emulator: answer like Vipps' 3010
            _logger.exception("Emulator error on %s %s", self.command, path)
            error = errors.domain_error(3010, "The emulator failed; see its log.")
            reply = self._error_reply(error, path, errors.PROBLEM)
        self._send(reply)

    def _api(self, request, started):
        route, params = api.match(request.method, request.path)
        if route is None:
            status = 405 if params else 404
            err = errors.ApiError(status, detail=f"No route for {request.path}.")
            if params:
                err.headers["Allow"] = ", ".join(sorted(set(params)))
            self._log(request, None, status, started)
            return self._error_reply(err, request.path, errors.PROBLEM)
        request.params = params
        fault = self.emulator.fault_rules.take(route.operation)
        entry = {"fault": None}
        try:
            reply = self._run(route, request, fault, entry)
        except _AnswerDroppedError:
            self._log(request, route.operation, None, started, entry["fault"])
            raise
        self._log(request, route.operation, reply.status, started, entry["fault"])
        return reply

    def _run(self, route, request, fault, entry):
        if fault is not None and fault.latency:
            entry["fault"] = "latency"
            self.emulator.stopping.wait(fault.latency)
        drop = fault is not None and (fault.timeout or fault.disconnect)
        hang = 0.0
        if drop and fault.timeout:
            hang = fault.hang_seconds or self.emulator.settings.fault_hang_seconds
        if fault is not None and not fault.processed:
            if fault.status:
                entry["fault"] = f"status {fault.status}"
                return self._error_reply(fault.error(), request.path, route.style)
            if drop:
                entry["fault"] = "timeout" if fault.timeout else "disconnect"
                self._drop(hang)
        try:
            reply = getattr(self.emulator.api, route.handler)(request)
        except errors.ApiError as err:
            reply = self._error_reply(err, request.path, route.style)
        if fault is not None and fault.processed:
            if fault.status:
                entry["fault"] = f"status {fault.status} (processed)"
                return self._error_reply(fault.error(), request.path, route.style)
            if drop:
                entry["fault"] = ("timeout" if fault.timeout else "disconnect") + (
                    " (processed)"
                )
                self._drop(hang)
        return reply

    def _log(self, request, operation, status, started, fault=None):
        reference = request.params.get("reference") or request.params.get("order_id")
        if reference is None and operation == "createPayment":
            try:
                body = request.json()
                reference = body.get("reference") if isinstance(body, dict) else None
            except errors.ApiError:
                reference = None
        self.emulator.record_request(
            {
                "timestamp": isoformat(self.emulator.clock.now()),
                "method": request.method,
                "path": request.path,
                "operation": operation,
                "status": status,
                "idempotencyKey": request.header("Idempotency-Key"),
                "reference": reference,
                "msn": request.header("Merchant-Serial-Number"),
                # The non-secret headers, for checking what a client sends.
                "headers": {
                    name: request.header(name)
                    for name in LOGGED_HEADERS
                    if request.header(name) is not None
                },
                "durationMs": round((time.monotonic() - started) * 1000, 1),
                "fault": fault,
            }
        )


def make_server(emulator, host, port):
    """Create (and bind) the HTTP server for ``emulator``."""
    handler = type("BoundHandler", (Handler,), {"emulator": emulator})
    return EmulatorHTTPServer((host, port), handler)
