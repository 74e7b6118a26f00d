# homesync: `make demo` and `make test` set everything up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
VENV := .venv
# Debian's own python3: the venv must be usable by unprivileged users (tests run the
# product as one), which a python under /root (pyenv) is not.
PYTHON = $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# This is a development and test set-up. Installing the product needs none of it: the
# Debian packages (`make deb`) depend only on python3 and borg's runtime libraries.
# Build: python, borg's C libraries (what `make deb` needs, `make build-packages`).
BUILD_PACKAGES := python3 python3-venv python3-dev gcc pkg-config make \
	liblz4-dev libzstd-dev libxxhash-dev libacl1-dev libssl-dev ca-certificates
# Tests: slapd, dbus-daemon, OpenSSH and rsync (benchmark baselines), tmux, attr tools,
# an unprivileged-user switcher (util-linux), Chromium (renders the HTML report in a
# screenshot test), debootstrap and systemd-analyze (the packages in a fresh Debian root),
# PostgreSQL and its client library (the index's second engine; the fixtures start a
# throwaway cluster, never the system one).
TEST_PACKAGES := slapd ldap-utils dbus-daemon openssh-client openssh-server rsync tmux \
	util-linux procps chromium debootstrap systemd postgresql libpq5
APT_PACKAGES := $(BUILD_PACKAGES) $(TEST_PACKAGES)

.PHONY: setup system-packages build-packages install-apt demo test test-fast bench bench-load deb wheel clean

setup: system-packages $(STAMP)

system-packages:
	@$(MAKE) --no-print-directory install-apt PACKAGES="$(APT_PACKAGES)"

build-packages:
	@$(MAKE) --no-print-directory install-apt PACKAGES="$(BUILD_PACKAGES)"

install-apt:
	@missing=$$(for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:" $$missing; \
		echo "slapd slapd/no_configuration boolean true" | $(SUDO) debconf-set-selections; \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: setup
	$(PY) demo/demo.py

# Every test on the embedded index (SQLite), then the backbone (enroll, back up, restore
# onto new hardware) and isolation again with the server's index on PostgreSQL. In
# TEST_WORKERS pytest-xdist workers, a test file at a time each (its module-scoped
# server is not started twice); TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: setup
	HOMESYNC_REQUIRE_SLAPD=1 HOMESYNC_REQUIRE_PACKAGING=1 $(PYTEST) tests
	HOMESYNC_TEST_INDEX=postgresql $(PYTEST) tests/end_to_end/test_backbone.py tests/end_to_end/test_isolation.py

# The Debian packages homesync and homesync-server, and the wheel, in dist/
# (packaging/build-deb.sh; installing them is the admin guide's first section).
deb: build-packages
	packaging/build-deb.sh

# The wheel alone, for sites that install with pip or pipx.
wheel: setup
	$(PY) -m pip wheel -q --no-deps -w dist .

bench: setup
	$(PY) bench/run.py

# Load on one and two server nodes, and RPC throughput on both index engines (issues 13, 14):
# bench/load_bench.py, about 10 minutes on 2 cores; `--computers 3` runs it small.
bench-load: setup
	$(PY) bench/load_bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info
