# `make demo`: install and run the main job on embedded defaults (no servers needed).
# `make test`: install everything the tests need on a fresh machine, then run them all.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test servers lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

servers:
	scripts/install-servers.sh

demo: install
	$(BIN)/nethical-otel demo

test: install-test servers
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -ra

bench: install
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
