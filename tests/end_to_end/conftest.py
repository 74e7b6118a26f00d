from tests.support.homesync_client import computer_factory, computer_factory_module  # noqa: F401
from tests.support.homesync_server import fresh_server, homesync_server  # noqa: F401
