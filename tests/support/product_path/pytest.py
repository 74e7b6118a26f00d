"""Put first on the PYTHONPATH of the product's processes in tests (processes.user_env):
an installed homesync has no pytest, and neither do they. borg's self test, which every
borg command runs, imports borg.testsuite, which imports pytest when it can (about
0.15 s of CPU in each of the suite's thousands of borg commands)."""

raise ImportError("pytest is not part of an installed homesync")
