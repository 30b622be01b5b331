# Quick start: `make run` (the daily flow on embedded defaults) and `make test` (the test suite).
# Each target sets itself up first: a tools venv with a pinned uv, then `.venv` synced exactly to uv.lock.

PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := $(VENV)/bin/python

export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON_DOWNLOADS := never
# Local runs keep Prefect's history in the project and never phone home.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT ?= false
# The first start of the embedded server migrates a new database, which can take longer than the default 20 s.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: run test lint lock bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

run: $(VENV)/.synced
	$(PY) -m flows.daily $(ARGS)

test: $(VENV)/.synced
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check flows tasks blocks tests

# Normalize + write benchmark (default 1,000,000 tweets, ~5 min); quick: make bench ARGS="--tweets 20000".
bench: $(VENV)/.synced
	$(PY) benchmarks/bench.py $(ARGS)

# Re-resolve the lock after editing pyproject.toml; commit both files.
lock: $(UV)
	$(UV) lock --python $(PYTHON)

clean:
	rm -rf $(VENV) $(TOOLS) data .prefect .pytest_cache
