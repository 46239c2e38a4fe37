# Every target creates or updates .venv by itself: `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= ./tidings-data
APT_UI_PACKAGES := xvfb xauth libgl1-mesa-dri libmtdev1 xclip libgl1 libegl1 libgles2
export KIVY_NO_ARGS := 1
export KIVY_NO_CONSOLELOG := 1
export KIVY_LOG_MODE := PYTHON
export KIVY_HOME := $(CURDIR)/.kivy

.PHONY: run test lint typecheck app screenshots bench bench-quick bench-deps ui-deps interop-deps android-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test,app]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tidings serve --host $(HOST) --port $(PORT) --data $(DATA)

# System packages for Kivy under Xvfb, installed only when missing.
ui-deps:
	@if ! command -v xvfb-run >/dev/null 2>&1 || ! dpkg -s libgl1-mesa-dri >/dev/null 2>&1; then \
		echo "installing Xvfb and OpenGL packages for the UI tests"; \
		(apt-get update -qq && apt-get install -y -qq $(APT_UI_PACKAGES) >/dev/null) || \
		(sudo apt-get update -qq && sudo apt-get install -y -qq $(APT_UI_PACKAGES) >/dev/null); \
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

test: $(STAMP) ui-deps interop-deps lint typecheck android-check
	xvfb-run -a -s "-screen 0 1280x1024x24" $(PY) -m pytest -q -p no:cacheprovider

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
