# `make demo`, `make test` and `make check` each create or refresh .venv, then run.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test check bench venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/unisar demo $(ARGS)

# Two pytest-xdist workers; a module's tests stay on one worker, so a fixture it shares
# (a broker, a fitted model) is built once. docs/testing.md has the timings.
PYTEST := $(BIN)/python -m pytest -q -n 2 --dist loadscope

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(PYTEST) $(ARGS)

# The fast lane: unit and property tests, no broker, no whole demo (under 3 minutes).
check: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(PYTEST) -m "not integration and not slow" $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
