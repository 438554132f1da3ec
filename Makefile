# The single source of set-up. `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test
SYS    := .venv/.system-packages

.PHONY: run test bench lint install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# torch is pinned here, not in pyproject.toml: 2.13.0 is a CPU build on this machine's disk,
# an open range would pull a multi-gigabyte CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	touch $@

install: $(STAMP)

# System packages the tests drive: Chromium for the browser tests, Mosquitto for the MQTT ones.
$(SYS):
	@mkdir -p $(VENV)
	@if [ -x /usr/bin/chromium ] && command -v mosquitto >/dev/null; then \
		echo "chromium and mosquitto present"; \
	elif [ "$$(id -u)" = "0" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium mosquitto; \
	else \
		echo "not root: install chromium and mosquitto yourself to run browser and mqtt tests"; \
	fi
	touch $@

$(TSTAMP): $(STAMP) $(SYS)
	$(PIP) install -e ".[test]"
	touch $@

install-test: $(TSTAMP)

run: install
	$(VENV)/bin/simulacra serve

test: install-test
	$(PY) -m pytest -q -ra

bench: install
	$(PY) bench/emulator_suite.py
	$(PY) bench/apps.py
	$(PY) bench/files.py
	$(PY) bench/stream.py

lint: install-test
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
