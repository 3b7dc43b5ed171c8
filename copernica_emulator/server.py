"""HTTP/1.1 keep-alive plumbing: read requests, hand them to the App, write answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

from .app import App, Incoming
from .messages import RequestLog, Response

MAX_LINE = 65537


class Owner(Protocol):
    app: App
    incomplete_requests: int

    def record(self, log: RequestLog) -> None: ...


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: Owner) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def drop_connections(self) -> None:
        """Close idle keep-alive connections so no handler outlives the server."""
        with self.connections_lock:
            open_sockets = list(self.connections)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CopernicaEmulator/1.0"
    sys_version = ""
    timeout = 60
    disable_nagle_algorithm = True
    server: EmulatorServer

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: requests may carry tokens."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()  # answered with "Invalid method" like any unsupported verb

    def _serve(self) -> None:
        received = time.time()
        split = urlsplit(self.path)
        path = unquote(split.path)
        body = self._read_body()
        if body is None:
            self.server.owner.incomplete_requests += 1
            self._drop()
            return
        outcome = self.server.owner.app.handle(
            Incoming(
                method=self.command,
                path=path,
                query=parse_qsl(split.query, keep_blank_values=True),
                content_type=self.headers.get("Content-Type", ""),
                authorization=self.headers.get("Authorization", ""),
                body=body,
            )
        )
        response = outcome.response
        log = RequestLog(
            method=self.command,
            path=path,
            query=parse_qs(split.query, keep_blank_values=True),
            status=response.status if response is not None else 0,
            authorized=outcome.authorized,
            at=received,
        )
        # Hooks run before the answer leaves, so no client can observe a half-applied change.
        self.server.owner.record(log)
        if response is None:
            self._drop()
        else:
            self._write(response)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return b""
        body = self.rfile.read(length) if length > 0 else b""
        if len(body) < length:
            # The client went away mid-request: a real server never handles such a request.
            return None
        return body

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        while True:
            size_line = self.rfile.readline(MAX_LINE)
            try:
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                self.close_connection = True
                return None
            if size == 0:
                while self.rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                return None  # the client went away mid-request
            chunks.append(chunk)
            self.rfile.readline(MAX_LINE)

    def _write(self, response: Response) -> None:
        try:
            self.send_response(response.status)  # also sends Server and Date
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            for name, value in response.headers:
                self.send_header(name, value)
            if response.status != 204:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if response.body and response.status != 204:
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        """Close the socket without answering (looks like an empty reply / reset)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
