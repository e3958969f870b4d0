"""HTTP layer: a threaded HTTP/1.1 keep-alive server in front of a ``Sandbox``."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO

from .errors import api_error_500
from .sandbox import Reply, Sandbox, to_json


class TruncatedRequest(Exception):
    """The connection closed before the whole body arrived."""


CONTROL_PREFIX = "/_sandbox"
_LOG_LOCK = threading.Lock()


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when several worker processes
    # open keep-alive connections at once.
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        sandbox: Sandbox,
        *,
        log_stream: TextIO | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.log_stream = log_stream
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, SandboxRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-request (a killed worker, a client timeout) is routine
        # here, not worth a traceback; anything else still gets the default report.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut open keep-alive connections so clients stop talking to a stopped sandbox."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def log(self, line: str) -> None:
        if self.log_stream is None:
            return
        with _LOG_LOCK:
            try:
                self.log_stream.write(line + "\n")
                self.log_stream.flush()
            except (OSError, ValueError):
                pass


class SandboxRequestHandler(BaseHTTPRequestHandler):
    server: SandboxHTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY the
    # client's delayed ACK can add ~40 ms to every response.
    disable_nagle_algorithm = True
    # Idle keep-alive connections are closed eventually so their threads exit.
    timeout = 300
    server_version = "stripe-sandbox"
    sys_version = ""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args) -> None:
        pass  # replaced by the one-line-per-request log in _handle

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        sandbox = self.server.sandbox
        try:
            body = self._read_body()
        except TruncatedRequest:
            self.close_connection = True
            self.server.log(f"{self.client_address[0]} {method} {self.path} -> body cut short")
            return
        try:
            if self.path == CONTROL_PREFIX or self.path.startswith(CONTROL_PREFIX + "/"):
                reply = sandbox.handle_control(method, self.path, body)
            else:
                reply = sandbox.handle_api(method, self.path, self.headers, body)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            reply = Reply(500, to_json(api_error_500().to_body()), outcome="error")
            self.close_connection = True

        elapsed = (time.monotonic() - started) * 1000
        status = reply.status if reply.action == "respond" else "-"
        self.server.log(
            f"{self.client_address[0]} {method} {self.path} -> {status} {reply.outcome} "
            f"{reply.operation or '-'} {elapsed:.1f}ms"
        )

        if reply.action == "hold":
            sandbox.closing.wait(reply.hold_seconds)
            self._abort()
        elif reply.action == "drop":
            self._abort()
        else:
            self._send(reply)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise TruncatedRequest
                chunks.append(chunk)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The client went away mid-body (a killed worker): Stripe never performs a request
            # it did not receive whole, so neither may the sandbox.
            raise TruncatedRequest
        return body

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status or 500)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _abort(self) -> None:
        """Close the connection without any response, as a network failure would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def make_server(
    sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0, log_stream: TextIO | None = None
) -> SandboxHTTPServer:
    return SandboxHTTPServer((host, port), sandbox, log_stream=log_stream)
