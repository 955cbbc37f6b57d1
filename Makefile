# Vigil: two commands on a fresh clone. `make run` (the local stack) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser run demo test lint typecheck check check-policies clean bench bench-quality bench-independent

setup: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Debian's headless Chromium, for the console's browser tests (from the package registry).
browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

## The main job on the embedded default: Azurite + simulated Workplace and Graph, until Ctrl-C.
run: setup
	$(PY) -m local.run

## Replays a fixed scenario through the same stack, prints a summary, exits 0 when it holds.
demo: setup
	$(PY) -m local.demo

test: setup browser
	$(PY) -m pytest

## ruff, and the import contracts in pyproject.toml (layers, what shared never imports, no circles).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: setup
	$(VENV)/bin/mypy .

## Validate a policies folder (or file) before deploying it: make check-policies POLICIES=path
POLICIES ?= policies
check-policies: setup
	$(PY) -m shared.policies check $(POLICIES)

## What CI runs.
check: lint typecheck test demo

clean:
	rm -rf $(VENV) node_modules .azurite .local .mypy_cache .ruff_cache .pytest_cache

## Storage cost, throughput, webhook latency and memory at 100k and 1M activities (docs/BENCHMARKS.md).
bench: setup
	$(PY) -m bench.pipeline

## Detection quality only (labelled scenarios: recall, false alerts, alerts per incident, time to alert).
bench-quality: setup
	$(PY) -m bench.pipeline --quality-only

## Detection quality on a second, independent labelled month (Workplace and Entra; about a minute).
bench-independent: setup
	$(PY) -m bench.independent --entra
