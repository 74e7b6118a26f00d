from tests.support.homesync_client import computer_factory  # noqa: F401
from tests.support.homesync_server import fresh_server, homesync_server  # noqa: F401
