"""What one SSH connection's channels may hold on the server (paramiko): a small window
until a channel runs borg serve, then the large one borg's throughput needs; a client
that sends more than a window allows (paramiko never checks) is disconnected; and the
transport thread's log lines come at our levels (transport_log).
"""

from __future__ import annotations

import logging

import paramiko
from paramiko.channel import Channel
from paramiko.common import MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA, cMSG_CHANNEL_WINDOW_ADJUST
from paramiko.message import Message

from homesync.transport import MAX_PACKET, WINDOW as BORG_WINDOW
from homesync_server import transport_log

SMALL_WINDOW = 256 * 1024  # every channel starts with this: RPC frames and refusals need no more


def _held(channel: Channel, more: int) -> None:
    """Raise SSHException if the client sent channel more than its window lets it."""
    if len(channel.in_buffer) + len(channel.in_stderr_buffer) + more > channel.in_window_size:
        raise paramiko.SSHException(f"the client overran channel {channel.chanid}'s window")


def _data(channel: Channel, message: Message) -> None:
    data = message.get_binary()
    _held(channel, len(data))
    Channel._feed(channel, data)


def _extended_data(channel: Channel, message: Message) -> None:
    code, data = message.get_int(), message.get_binary()
    _held(channel, len(data))
    if code == 1:  # stderr, the only kind there is
        Channel._feed(channel, data) if channel.combine_stderr else channel.in_stderr_buffer.feed(data)


class BoundedTransport(paramiko.Transport):
    """A server transport whose channels start with a small window and hold no more than it."""

    _channel_handler_table = {**paramiko.Transport._channel_handler_table,
                              MSG_CHANNEL_DATA: _data, MSG_CHANNEL_EXTENDED_DATA: _extended_data}

    def __init__(self, sock) -> None:
        super().__init__(sock, default_window_size=SMALL_WINDOW, default_max_packet_size=MAX_PACKET)
        self._last_level = logging.DEBUG

    def _log(self, level, msg, *args):
        # paramiko logs a traceback as a list of lines right after the message it explains.
        if isinstance(msg, list):
            level = transport_log.traceback_level(self._last_level)
        else:
            level = self._last_level = transport_log.level_for(level, str(msg))
        super()._log(level, msg, *args)


def open_window(channel: Channel, size: int = BORG_WINDOW) -> None:
    """Grow channel's window to size and tell the client, for borg serve's stream."""
    with channel.lock:
        extra = size - channel.in_window_size
        if extra <= 0:
            return
        channel.in_window_size = size
        channel.in_window_threshold = size // 10
    message = Message()
    message.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
    message.add_int(channel.remote_chanid)
    message.add_int(extra)
    channel.transport._send_user_message(message)
