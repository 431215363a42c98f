"""moto's HTTP server as a busy emulator needs it: persistent connections, and no line logged per request.

Profiled under a 1000-device storm (py-spy, issue 22), moto's server spent ~22 % of its samples in werkzeug's
per-request log line (a lock shared by every request thread and a write to stderr) and ~25 % setting up and tearing
down a TCP connection per request: werkzeug's development server answers every request with "Connection: close"
and, after each response, waits up to 10 ms for stray request bytes to discard. AWS's endpoints keep connections
alive and the SDKs reuse them; so does this server:

- KeepAliveHandler speaks HTTP/1.1 with persistent connections: the request body is read to its declared length
  (or its last chunk) whatever the application read of it, so the next request on the connection starts where it
  should; the response is sent with its Content-Length; a request that says "Connection: close", or an error, closes
  the connection.
- quiet() drops werkzeug's access log (one line per request) and keeps its warnings and errors.
"""
import logging
import socket
import sys

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import DechunkedInput


def quiet():
    """werkzeug's request lines (INFO) are dropped; its warnings and errors (tracebacks) still reach stderr."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


class _Body:
    """The request body as the application reads it, bounded by Content-Length; drain() reads what it left."""

    def __init__(self, rfile, length):
        self.rfile = rfile
        self.left = length

    def read(self, size=-1):
        if self.left <= 0:
            return b""
        if size is None or size < 0 or size > self.left:
            size = self.left
        data = self.rfile.read(size)
        self.left -= len(data)
        if not data:
            self.left = 0
        return data

    def readline(self, size=-1):
        if self.left <= 0:
            return b""
        if size is None or size < 0 or size > self.left:
            size = self.left
        data = self.rfile.readline(size)
        self.left -= len(data)
        return data

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")

    def drain(self):
        while self.left > 0 and self.read(65536):
            pass


class KeepAliveHandler(MotoRequestHandler):
    """moto's request handler (its header handling included) on persistent HTTP/1.1 connections."""

    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run_wsgi(self):
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        if isinstance(environ["wsgi.input"], DechunkedInput):
            body = environ["wsgi.input"]
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.send_error(400, "bad Content-Length")
                self.close_connection = True
                return
            body = environ["wsgi.input"] = _Body(self.rfile, length)
        response = {}

        def start_response(status, headers, exc_info=None):
            if exc_info and response.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            response["status"], response["headers"] = status, headers
            return response.setdefault("chunks", []).append

        try:
            result = self.server.app(environ, start_response)
            try:
                chunks = response.setdefault("chunks", [])
                for data in result:
                    if data:
                        chunks.append(data)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception as e:  # the application failed: answer 500 as werkzeug does, close the connection
            self.close_connection = True
            self.server.log("error", "Error on request %s %s: %r", self.command, self.path, e)
            import traceback

            traceback.print_exc(file=sys.stderr)
            response = {"status": "500 Internal Server Error", "headers": [("Content-Type", "text/plain")],
                        "chunks": [b"Internal Server Error"]}
        # Whatever the application left unread must go, or it would be taken for the next request.
        if isinstance(body, _Body):
            body.drain()
        else:
            while body.read(65536):
                pass
        payload = b"".join(response.get("chunks", []))
        code, _, msg = response["status"].partition(" ")
        code = int(code)
        self.send_response_only(code, msg)
        self.send_header("Server", self.version_string())
        self.send_header("Date", self.date_time_string())
        no_body = self.command == "HEAD" or 100 <= code < 200 or code in (204, 304)
        has_length = False
        for key, value in response["headers"]:
            lower = key.lower()
            if lower in ("connection", "transfer-encoding"):
                continue
            if lower == "content-length":
                if no_body and self.command != "HEAD":
                    continue
                has_length = True
                if self.command != "HEAD":
                    value = str(len(payload))
            self.send_header(key, value)
        if not has_length and not (100 <= code < 200 or code in (204, 304)):
            self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # Head and body in one write: two small writes on a kept-alive connection wait for the client's delayed ACK
        # (Nagle's algorithm), ~40 ms a request.
        self._headers_buffer.append(b"\r\n")
        if payload and not no_body:
            self._headers_buffer.append(payload)
        self.flush_headers()
        response["sent"] = True
