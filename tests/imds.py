"""A fake EC2 instance metadata service on 127.0.0.1, for dockerup's user-data tests.

    with FakeIMDS({"containers": [...]}) as imds:
        imds.endpoint        # http://127.0.0.1:PORT
        imds.mode = "500"    # switch behaviour while it runs
        imds.requests        # every request it got: Request(method, path, headers)
        imds.stop()          # an outage: the port is closed from now on

Modes (the token is issued by PUT /latest/api/token; GET /latest/user-data
needs it in every mode but "v1", as on an instance that requires IMDSv2):
  v2         the user-data document; a GET without a valid token gets 401
  v1         IMDSv1 only: the token PUT is refused (`refuse_token_with`, 403 or
             405); the GET works without a token
  hung-token the token PUT is never answered (as for a container beyond the
             instance's hop limit); the GET works without a token
  404        the instance has no user-data
  slow       every request waits `slow_seconds` (longer than dockerup's 5 s
             deadline), then the connection is closed without an answer
  500        every request, the token PUT included, is answered HTTP 500
  malformed  200 with a body that is not JSON
  invalid    200 with JSON that fails the user-data schema (INVALID_DOCUMENT)
  gzip       200 with the document gzip-compressed
  trickle    200 with the document sent one byte every `trickle_interval`
             seconds: each read is quick, the whole answer is not
"""

import gzip
import http.server
import json
import secrets
import threading
from dataclasses import dataclass

MODES = ("v2", "v1", "hung-token", "404", "slow", "500", "malformed", "invalid", "gzip", "trickle")
TOKEN_PATH = "/latest/api/token"
USER_DATA_PATH = "/latest/user-data"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MALFORMED_BODY = b'{"containers": [{"name": "web",'
# containers[2].image is a number: the example of the issue.
INVALID_DOCUMENT = {"containers": [{"name": "valid-a", "image": "example/a:1"},
                                   {"name": "valid-b", "image": "example/b:1"},
                                   {"name": "broken", "image": 42}]}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict  # lower-case names

    def header(self, name):
        return self.headers.get(name.lower())


class FakeIMDS:
    def __init__(self, document=None, mode="v2"):
        self.document = document if document is not None else {"containers": []}
        self.mode = mode
        self.refuse_token_with = 403
        self.slow_seconds = 30.0
        self.trickle_interval = 0.4
        self.requests = []
        self.tokens = set()
        self._lock = threading.Lock()
        self._released = threading.Event()  # ends every slow wait at stop()
        self._server = None
        self._thread = None
        self.port = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        handler = type("Handler", (_Handler,), {"imds": self})
        self._released.clear()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port or 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Close the port. Slow answers in progress are abandoned."""
        if self._server is None:
            return
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, mode):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        self._mode = mode

    def record(self, request):
        with self._lock:
            self.requests.append(request)

    def requests_for(self, method, path):
        return [r for r in self.requests if r.method == method and r.path == path]

    def issue_token(self):
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens.add(token)
        return token

    def body(self):
        document = INVALID_DOCUMENT if self.mode == "invalid" else self.document
        data = MALFORMED_BODY if self.mode == "malformed" else json.dumps(document).encode()
        return gzip.compress(data) if self.mode == "gzip" else data


class _Handler(http.server.BaseHTTPRequestHandler):
    imds = None  # set on the subclass FakeIMDS.start makes

    def log_message(self, format, *args):
        pass

    def handle_request(self):
        imds = self.imds
        imds.record(Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        mode = imds.mode
        if mode == "slow" or (mode == "hung-token" and self.command == "PUT"):
            imds._released.wait(imds.slow_seconds)
            self.close_connection = True
            return
        if mode == "500":
            return self.answer(500, b"internal error")
        if self.command == "PUT" and self.path == TOKEN_PATH:
            if mode == "v1":
                return self.answer(imds.refuse_token_with, b"")
            if not self.headers.get(TTL_HEADER):
                return self.answer(400, b"missing " + TTL_HEADER.encode())
            return self.answer(200, imds.issue_token().encode())
        if self.command == "GET" and self.path == USER_DATA_PATH:
            if mode not in ("v1", "hung-token") and self.headers.get(TOKEN_HEADER) not in imds.tokens:
                return self.answer(401, b"")
            if mode == "404":
                return self.answer(404, b"not found")
            if mode == "trickle":
                return self.trickle(imds.body(), imds.trickle_interval)
            return self.answer(200, imds.body())
        return self.answer(404 if self.command == "GET" else 405, b"")

    do_GET = do_PUT = do_POST = handle_request

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def trickle(self, body, interval):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        try:
            for index in range(len(body)):
                if self.imds._released.wait(interval):
                    break
                self.wfile.write(body[index:index + 1])
                self.wfile.flush()
        except OSError:
            pass  # the client gave up
        self.close_connection = True

    def handle(self):
        try:
            super().handle()
        except OSError:
            pass  # a client that timed out and left
