# `make serve` and `make test` each do all set-up on a fresh machine (Python 3.11).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: serve test lint browser-deps bench clean

# torch is pinned first: a range that admits a newer release would pull a CUDA build of several GB.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(INSTALLED)

serve: $(INSTALLED)
	$(BIN)/realtime serve

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole run is in a network namespace with only loopback: see tests/loopback-only.
test: lint browser-deps
	sh tests/loopback-only $(BIN)/python -m pytest

# The browser tests drive Debian's Chromium; tests/loopback-only needs `ip` (iproute2).
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || ! command -v ip >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "apt-get: installing chromium and iproute2 for the browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends chromium iproute2 >/dev/null; \
		else \
			echo "WARNING: the browser tests need: sudo apt-get install chromium iproute2"; \
		fi; \
	fi

bench: $(INSTALLED)
	$(BIN)/python -m benchmarks.codecs
	$(BIN)/python -m benchmarks.stream

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
