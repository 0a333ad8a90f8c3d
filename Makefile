# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
SHUTDOWN_GRACE ?= 30
SDK_VERSIONS := 1.1.0 1.0.7
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
## Packages are installed by uv (its pin is in requirements-dev.txt; the venv keeps pip, which
## tools/audit.py reads): the same pinned versions pip would install, in seconds rather than minutes.
## --compile-bytecode writes their .pyc files at install, as pip does: without them (uv's default, or
## PYTHONDONTWRITEBYTECODE set) every process compiles each module it imports, and the service's
## start-up takes 2.6 s of CPU instead of 1.1 s.
UV     := $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python
## Parallel test workers: many tests wait on sockets, subprocesses and timers, so more workers than
## cores pay: on 2 cores, 6 workers took the parallel part from 289 s (4 workers) to 261 s.
TEST_WORKERS ?= 6

.PHONY: run worker install install-dev sdks system-deps test tests-parallel lint typecheck bench profile soak audit lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(PIP) install "$$(grep -m1 '^uv==' requirements-dev.txt)"

$(VENV)/.runtime: requirements.txt | $(BIN)/uv
	$(UV) -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(UV) -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

## The official Autoenhance SDKs, unmodified, for the fidelity test (each in its own folder).
sdks: install-dev
	@for v in $(SDK_VERSIONS); do \
	  test -d .sdk/$$v/autoenhance || $(UV) --no-deps --target .sdk/$$v autoenhance==$$v || exit 1; \
	done

## OS packages the tests use: Debian's chromium (browser test), unzip and bsdtar (independent ZIP readers),
## curl (the benchmark's client), nginx (the benchmark's C reference upstream; Debian puts it in /usr/sbin).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v unzip >/dev/null 2>&1 || missing="$$missing unzip"; \
	command -v bsdtar >/dev/null 2>&1 || missing="$$missing libarchive-tools"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
	  echo "installing OS packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

## uvloop + httptools with the service's header, keep-alive and concurrency limits (app/server.py).
run: install
	$(BIN)/python -m app serve --host $(HOST) --port $(PORT) --timeout-graceful-shutdown $(SHUTDOWN_GRACE)

## A job worker for the scaled-out mode (needs REDIS_URL; docs/operations.md, "Running at scale").
worker: install
	$(BIN)/python -m app.worker

## The quick checks first; then mypy (`make typecheck`) and the audit (one core, then the network)
## beside the parallel tests, which leave some CPU idle; then the tests marked `alone`, with nothing
## beside them (only the files that use the mark are collected).
test: install-dev sdks system-deps
	$(BIN)/python -m compileall -q app simulator harness
	$(BIN)/ruff check app simulator tests bench tools harness
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory -j3 --output-sync=line tests-parallel typecheck audit
	$(BIN)/python -m pytest -m alone $$(grep -rl --include='*.py' 'mark.alone' tests)

tests-parallel: install-dev sdks system-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not alone"

## Known vulnerabilities in the pinned requirements: pip-audit (OSV), or the registry's data offline.
audit: install-dev
	$(BIN)/python tools/audit.py requirements.txt requirements-dev.txt

lint: install-dev
	$(BIN)/ruff check app simulator tests bench tools harness
	$(BIN)/lint-imports

typecheck: install-dev
	$(BIN)/mypy app simulator

## The performance suite (not part of `make test`): seven cases beside their references
## (nginx + curl among them), ~4 minutes.
bench: install-dev system-deps
	$(BIN)/python -m bench

## Where the service's CPU goes while it streams (py-spy on the running service).
profile: install-dev
	$(BIN)/python -m bench.profile

## 50 concurrent callers for 60 s with 5 % upstream faults; every ZIP validated (docs/operations.md, Resilience).
soak: install-dev
	$(BIN)/python -m bench.soak --callers 50 --seconds 60

## Re-pin every package (runtime and dev) from the short .in files.
lock: install-dev
	$(BIN)/uv pip compile -q requirements.in -o requirements.txt --python-version 3.11
	$(BIN)/uv pip compile -q requirements-dev.in -o requirements-dev.txt --python-version 3.11

clean:
	rm -rf $(VENV) .sdk data test-artifacts .pytest_cache
