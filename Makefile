# `make demo`: install (with the `ci` extra: the live table and the PNG) and run the main job
# on embedded defaults (no servers needed).
# `make test`: install everything the tests need on a fresh machine, then run them all.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Tools built from Go modules (actionlint) live outside the repo; /usr/local/go/bin is Go's
# standard install place, for shells that do not have it on PATH.
TOOLS_BIN ?= $(HOME)/.cache/nethical-otel/bin
ACTIONLINT_VERSION ?= v1.7.7
# Prometheus 3 (native histograms, the OTLP receiver), built from the Go module proxy: Go module
# v0.316.0 is Prometheus 3.16.0. Kept in its own directory: Debian's 2.42 `prometheus` stays the
# one on PATH (the classic path is tested on it).
PROMETHEUS3_MODULE_VERSION ?= v0.316.0
PROMETHEUS3_DIR ?= $(HOME)/.cache/nethical-otel/prometheus3/$(PROMETHEUS3_MODULE_VERSION)
export PATH := $(TOOLS_BIN):$(PATH):/usr/local/go/bin

.PHONY: demo test install install-ci install-test servers prometheus3 collector actionlint lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-ci: $(BIN)/python
	$(BIN)/pip install -q -e '.[ci]'

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

servers:
	scripts/install-servers.sh

demo: install-ci
	$(BIN)/nethical-otel demo

# The OpenTelemetry Collector the integration tests run, built once per manifest into
# ~/.cache/nethical-otel/collector/ (collector/build.sh; a no-op when already built).
collector:
	@if command -v go >/dev/null 2>&1; then \
		collector/build.sh; \
	elif [ -n "$$CI" ]; then \
		echo "make: Go is not installed, and CI must build the collector (collector/build.sh); install Go" >&2; \
		exit 1; \
	else \
		echo "!!! make: Go is not installed: the collector tests will be SKIPPED (install Go, then make test)" >&2; \
	fi

# Prometheus 3 for the native-histogram tests (measured 6 minutes cold on 2 cores; reused after),
# and its promtool beside it (the rule unit tests with native histograms in input_series, and
# the check of prometheus.yml; a minute more, it shares the module cache).
# The build has no web UI assets; the API and the OTLP receiver are all the tests use.
prometheus3:
	@if [ -x "$(PROMETHEUS3_DIR)/prometheus" ] && [ -x "$(PROMETHEUS3_DIR)/promtool" ]; then \
		true; \
	elif command -v go >/dev/null 2>&1; then \
		echo "make: building Prometheus 3 ($(PROMETHEUS3_MODULE_VERSION)) and promtool into $(PROMETHEUS3_DIR), once"; \
		GOBIN="$(PROMETHEUS3_DIR)" go install \
			github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS3_MODULE_VERSION) \
			github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS3_MODULE_VERSION); \
	elif [ -n "$$CI" ]; then \
		echo "make: Go is not installed, and CI must build Prometheus 3; install Go" >&2; \
		exit 1; \
	else \
		echo "!!! make: Go is not installed: the Prometheus 3 tests will be SKIPPED" >&2; \
	fi

# actionlint (the official one, from the Go module proxy) checks the CI workflow in the tests.
actionlint:
	@if [ -x "$(TOOLS_BIN)/actionlint" ]; then \
		true; \
	elif command -v go >/dev/null 2>&1; then \
		GOBIN="$(TOOLS_BIN)" go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION); \
	elif [ -n "$$CI" ]; then \
		echo "make: Go is not installed, and CI must build actionlint; install Go" >&2; \
		exit 1; \
	else \
		echo "!!! make: Go is not installed: the workflow lint test will be SKIPPED" >&2; \
	fi

# The venv's bin/ goes first on PATH for the run: tests find the tools the test extra installs
# there (check-jsonschema, kubernetes-validate) by name, as in an activated venv.
test: install-test servers prometheus3 collector actionlint
	$(BIN)/ruff check .
	PATH="$(abspath $(BIN)):$$PATH" PROMETHEUS3_BINARY="$(PROMETHEUS3_DIR)/prometheus" \
		$(BIN)/python -m pytest -q -ra

# agent_step.py runs Prometheus 3 (`make prometheus3`) and Debian's 2.42 (`make servers`).
bench: install prometheus3
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/detector.py
	$(BIN)/python benchmarks/detection_quality.py
	$(BIN)/python benchmarks/power.py
	# Apache Otava pins numpy 2.2 and pulls database clients; its analysis needs numpy and scipy only.
	$(BIN)/pip install --quiet --no-deps apache-otava==0.8.0
	$(BIN)/python benchmarks/changepoints.py
	$(BIN)/python benchmarks/loadgen.py
	$(BIN)/python benchmarks/import_cost.py
	PROMETHEUS3_BINARY="$(PROMETHEUS3_DIR)/prometheus" $(BIN)/python benchmarks/agent_step.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
