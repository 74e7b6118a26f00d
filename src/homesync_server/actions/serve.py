"""`homesync-server serve`: run the SSH endpoint in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading

from homesync_server import config as server_config
from homesync_server.actions.setup import host_key
from homesync_server.config import Layout
from homesync_server.endpoint import Endpoint
from homesync_server.services import Services

logger = logging.getLogger(__name__)


def serve(layout: Layout, listen: str | None, ready=None) -> None:
    """Serve until a stop signal; close every session cleanly on the way out."""
    services = Services.open(layout)
    host, port = server_config.parse_listen(listen or services.config.listen)
    endpoint = Endpoint(services, host_key(layout), host, port)
    stop = threading.Event()

    def on_signal(signum, frame):
        logger.info("received signal %d, stopping", signum)
        stop.set()
        endpoint.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bound = endpoint.address
    logger.info("listening on %s:%d", *bound)
    if ready:
        ready(bound)
    try:
        endpoint.serve_forever()
    finally:
        endpoint.stop()
        services.close()
        logger.info("stopped")
