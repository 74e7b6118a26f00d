"""paramiko's transport messages at our levels (transport_log)."""

import logging

from homesync_server.transport_log import level_for, traceback_level


def test_a_peer_gone_and_a_missing_banner_are_debug():
    assert level_for(logging.ERROR, "Socket exception: Connection reset by peer (104)") == logging.DEBUG
    assert level_for(logging.ERROR, "Exception (server): Error reading SSH protocol banner") == logging.DEBUG
    assert level_for(logging.ERROR, "Exception (server): Error reading SSH protocol banner[Errno 104] "
                                    "Connection reset by peer") == logging.DEBUG


def test_other_connection_failures_are_warnings_and_bugs_stay_errors():
    assert level_for(logging.ERROR, "Exception (server): Incompatible version (1.5 instead of 2.0)") == logging.WARNING
    assert level_for(logging.ERROR, "Unknown exception: 'NoneType' object has no attribute 'x'") == logging.ERROR
    assert level_for(logging.INFO, "Disconnect (code 11): done") == logging.INFO
    assert traceback_level(logging.ERROR) == logging.ERROR and traceback_level(logging.WARNING) == logging.DEBUG
