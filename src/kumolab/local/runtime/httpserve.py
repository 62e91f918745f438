"""A small threaded HTTP/1.1 server shared by the stage, website and Lambda endpoints.

Loopback is shared by every account and reachable from browsers, so each request passes
:mod:`kumolab.local.guard`'s checks first (review L3): ``Host`` is ``127.0.0.1:<port>``/``localhost:<port>``
(421 otherwise: no DNS rebinding), ``Content-Length`` is digits only (400) and at most :data:`MAX_BODY` (413),
at most :data:`kumolab.local.guard.MAX_CONCURRENT` requests run at once, and a response header with CR/LF (a
handler's or the emulator's) becomes a 502 instead of splitting the response.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kumolab.local import guard

MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit


def json_message(message: str) -> bytes:
    import json

    return json.dumps({"message": message}).encode()


@dataclass
class Request:
    method: str
    path: str  # raw path, percent-encoded, without the query string
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    client_ip: str

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def serve(app: Callable[[Request], Response], port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving ``app`` on a daemon thread; returns the server (``server_address[1]`` is the port)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "kumolab-runtime"

        def log_message(self, fmt, *args):  # keep the log for errors only
            pass

        def _handle(self) -> None:
            try:
                length = guard.check_request(
                    self.headers.get("Host"),
                    self.server.server_address[1],
                    self.headers.get("Content-Length"),
                    MAX_BODY,
                )
            except guard.Refused as refused:
                message = "Request Too Long" if refused.status == 413 else refused.message
                self._send(Response(refused.status, json_message(message), [("Content-Type", "application/json")]))
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            request = Request(self.command, path, query, list(self.headers.items()), body, self.client_address[0])
            try:
                response = app(request)
            except Exception as exc:  # never leave a client hanging
                import traceback

                traceback.print_exc()
                response = Response(
                    500,
                    f'{{"message":"local runtime error: {type(exc).__name__}"}}'.encode(),
                    [("Content-Type", "application/json")],
                )
            self._send(response, head=self.command == "HEAD")

        def _send(self, response: Response, head: bool = False) -> None:
            if not guard.headers_safe(response.headers):
                response = Response(
                    502,
                    json_message("the response had a header with CR or LF; refused"),
                    [("Content-Type", "application/json")],
                )
            self.send_response(response.status)
            names = {k.lower() for k, _ in response.headers}
            for key, value in response.headers:
                self.send_header(key, value)
            if "content-length" not in names:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if not head and response.body and response.status not in (204, 304):
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle

        def __getattr__(self, name: str):
            # Any other method (TRACE, CONNECT, PROPFIND, ...) goes to the app too, as on API Gateway.
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

    server = guard.bound_threads(_Server((host, port), Handler))
    threading.Thread(target=server.serve_forever, name=f"http-{server.server_address[1]}", daemon=True).start()
    return server


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
