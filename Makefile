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

.PHONY: run test browser lint lock bench clean server pool deploy deploy-production worker

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $@ $(VENV)/.runtime

# Running the pipeline needs only the runtime dependencies (no test or lint tools); `--inexact` keeps the
# dev tools of an earlier `make test` rather than removing them.
$(VENV)/.runtime: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --no-dev --inexact --python $(PYTHON)
	touch $@

run: $(VENV)/.runtime
	$(PY) -m flows.daily $(ARGS)

test: $(VENV)/.synced browser
	$(PY) -m pytest $(PYTEST_ARGS)

# The dashboard test renders the page in headless Chromium (Debian's package); install it when missing
# (about 30 s for apt-get update + install).
browser:
	@command -v chromium >/dev/null || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check flows tasks blocks tests

# Normalize + write and analysis benchmark (default 1,000,000 tweets, ~5 min + the analysis case); quick: make bench ARGS="--tweets 20000".
bench: $(VENV)/.synced
	$(PY) benchmarks/bench.py $(ARGS)

# Re-resolve the lock after editing pyproject.toml; commit both files.
lock: $(UV)
	$(UV) lock --python $(PYTHON)

clean:
	rm -rf $(VENV) $(TOOLS) data .prefect .pytest_cache

# Deployment on a Prefect server (README "Deploy"): `make server` in one terminal, then `make deploy` (or
# `make deploy-production`) and `make worker`. PREFECT_API_URL selects another server or Prefect Cloud.
PREFECT_SERVER_PORT ?= 4200
DEPLOY_API_URL := $(or $(PREFECT_API_URL),http://127.0.0.1:$(PREFECT_SERVER_PORT)/api)
WORK_POOL ?= x-pipeline
PREFECT := PREFECT_API_URL=$(DEPLOY_API_URL) $(VENV)/bin/prefect

# The UI asks the API at PREFECT_UI_API_URL, which does not follow --port (FIELD_NOTES): set it too.
server: $(VENV)/.runtime
	PREFECT_UI_API_URL=http://127.0.0.1:$(PREFECT_SERVER_PORT)/api \
		$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_SERVER_PORT)

pool: $(VENV)/.runtime
	$(PREFECT) work-pool inspect $(WORK_POOL) >/dev/null 2>&1 || $(PREFECT) work-pool create $(WORK_POOL) --type process

# Trying it out: sample posts into a local folder and a DuckDB file on the worker.
deploy: pool
	$(PREFECT) --no-prompt deploy --name daily --name backfill

# Production: the X API, the S3 lake and the warehouse, from the blocks `python -m blocks.create` saves.
deploy-production: pool
	PREFECT_API_URL=$(DEPLOY_API_URL) $(PY) -m blocks.create --check
	$(PREFECT) --no-prompt deploy --name production --name backfill-production

worker: $(VENV)/.runtime
	PREFECT_API_URL=$(DEPLOY_API_URL) X_PIPELINE_DIR=$(CURDIR) $(VENV)/bin/prefect worker start --pool $(WORK_POOL)
