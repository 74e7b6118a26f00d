"""GET /metrics on a loopback address, answered by an HTTP server in a thread of
`homesync-server serve`, from metrics computed at most every few seconds (Cached).
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import AF_INET, AF_INET6
from typing import Callable, Generic, TypeVar

from homesync_server.reports.metrics import CONTENT_TYPE

logger = logging.getLogger(__name__)
REQUEST_TIMEOUT = 10.0
T = TypeVar("T")


class Cached(Generic[T]):
    """Calls produce at most once every seconds; calls in between get the last value."""

    def __init__(self, produce: Callable[[], T], seconds: float) -> None:
        self._produce, self._seconds = produce, seconds
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = float("-inf")

    def __call__(self) -> T:
        with self._lock:
            if self._value is None or time.monotonic() - self._at >= self._seconds:
                self._value, self._at = self._produce(), time.monotonic()
            return self._value


class MetricsEndpoint:
    """An HTTP server in a thread of its own that answers only GET /metrics."""

    def __init__(self, host: str, port: int, produce: Callable[[], str]) -> None:
        handler = type("Handler", (_Handler,), {"produce": staticmethod(produce)})
        server_class = type("Server", (ThreadingHTTPServer,),
                            {"address_family": AF_INET6 if ":" in host else AF_INET, "daemon_threads": True})
        self._server = server_class((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    def start(self) -> None:
        self._thread.start()
        logger.info("metrics at http://%s:%d/metrics", *self.address)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    produce: Callable[[], str]
    timeout = REQUEST_TIMEOUT
    server_version = "homesync-metrics"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is here")
            return
        try:
            body = self.produce().encode()
        except Exception:
            logger.exception("could not compute the metrics")
            self.send_error(500, "could not compute the metrics")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        logger.debug("metrics: %s " + format, self.client_address[0], *args)

