# homesync: `make demo` and `make test` set everything up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
VENV := .venv
# Debian's own python3: the venv must be usable by unprivileged users (tests run the
# product as one), which a python under /root (pyenv) is not.
PYTHON = $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Build: python, borg's C libraries. Tests: slapd, dbus-daemon, OpenSSH and rsync
# (benchmark baselines), tmux, attr tools, an unprivileged-user switcher (util-linux),
# Chromium (renders the HTML report in a screenshot test).
APT_PACKAGES := python3 python3-venv python3-dev gcc pkg-config make \
	liblz4-dev libzstd-dev libxxhash-dev libacl1-dev libssl-dev \
	slapd ldap-utils dbus-daemon openssh-client openssh-server rsync tmux \
	util-linux procps ca-certificates chromium

.PHONY: setup system-packages demo test test-fast bench clean

setup: system-packages $(STAMP)

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do \
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

test: setup
	HOMESYNC_REQUIRE_SLAPD=1 $(PY) -m pytest -q tests

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build src/*.egg-info
