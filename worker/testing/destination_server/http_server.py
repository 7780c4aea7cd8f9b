"""The HTTP side of the test destination: a keep-alive request handler that hands each request to
the server's protocol, and a threading server that can drop its idle connections."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import orjson

from worker.testing.destination_server.protocol import PROTOCOL_HEADERS, Answer, BadRequest

if TYPE_CHECKING:
    from worker.testing.destination_server.server import DestinationServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "FeedsyncTestDestination/1"
    disable_nagle_algorithm = True
    wbufsize = -1  # buffered: headers and body leave in one write, flushed after each request
    server: DestinationHTTPServer

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = (
                True  # the client went away (e.g. it timed out): nothing to answer
            )

    def do_POST(self) -> None:
        self._serve()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _serve(self) -> None:
        destination = self.server.destination
        try:
            raw = self._read_body()
            headers = {
                name: value for name in PROTOCOL_HEADERS if (value := self.headers.get(name))
            }
            answer = destination._answer(self.command, self.path, headers, raw)
        except BadRequest as exc:
            answer = Answer(exc.status, orjson.dumps({"message": str(exc)}), {}, close=True)
        except Exception as exc:  # a bug in this server: answer 500 and keep the trace for the test
            destination._record_error(f"{type(exc).__name__}: {exc}")
            answer = Answer(500, orjson.dumps({"message": f"test destination bug: {exc!r}"}))
        if answer.reset:
            self._reset()
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)

    def _reset(self) -> None:
        """Abort the connection: linger 0 makes close() send a TCP RST instead of a clean FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            if not length.isdigit():
                raise BadRequest(400, f"bad Content-Length: {length!r}")
            return self.rfile.read(int(length))
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";", 1)[0] or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        return b""  # HTTP/1.1: neither header means no body

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.destination.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


class DestinationHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], destination: DestinationServer) -> None:
        self.destination = destination
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections so their threads finish and server_close can join them."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        self.destination._record_error(f"{type(exc).__name__}: {exc}")
        super().handle_error(request, client_address)
