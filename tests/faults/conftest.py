from tests.faults.tally import SEED, SEED_VARIABLE


def pytest_report_header(config):
    return f"fault suite seed: {SEED} (replay with {SEED_VARIABLE}={SEED})"

# The tally of trials is told at the end of the run by tests/conftest.py (pytest-xdist's
# workers each keep their own, which the controller adds up).
