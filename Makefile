# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
SDK_VERSIONS := 1.1.0 1.0.7
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run install install-dev sdks system-deps test lint typecheck bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PIP) install -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

## The official Autoenhance SDKs, unmodified, for the fidelity test (each in its own folder).
sdks: install-dev
	@for v in $(SDK_VERSIONS); do \
	  test -d .sdk/$$v/autoenhance || $(PIP) install --no-deps --target .sdk/$$v autoenhance==$$v || exit 1; \
	done

## OS packages the tests use: Debian's chromium (browser test), unzip and bsdtar (independent ZIP readers).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v unzip >/dev/null 2>&1 || missing="$$missing unzip"; \
	command -v bsdtar >/dev/null 2>&1 || missing="$$missing libarchive-tools"; \
	if [ -n "$$missing" ]; then \
	  echo "installing OS packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: install
	$(BIN)/uvicorn app:app --host $(HOST) --port $(PORT)

test: install-dev sdks system-deps
	$(BIN)/ruff check app simulator tests bench
	$(BIN)/mypy app
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check app simulator tests bench

typecheck: install-dev
	$(BIN)/mypy app simulator

bench: install-dev
	$(BIN)/python -m bench

## Re-pin every package (runtime and dev) from the short .in files.
lock: install-dev
	$(PIP) install uv
	$(BIN)/uv pip compile -q requirements.in -o requirements.txt --python-version 3.11
	$(BIN)/uv pip compile -q requirements-dev.in -o requirements-dev.txt --python-version 3.11

clean:
	rm -rf $(VENV) .sdk data test-artifacts .pytest_cache
