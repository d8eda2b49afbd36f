# Enhanced Scheduler — `make run` starts the daemon, `make test` runs the whole suite.
# Both set up everything first: virtualenv, pinned dependencies, services, database, migrations;
# `make test` also Debian's Chromium for the browser tests (deploy/local/ensure-browser.sh).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-slow test-services test-unit test-integration test-browser test-faults lint format typecheck bench bench-dispatch bench-celery \
        migrate services browser db demo clean help bench-million bench-fire-load bench-shards

help:
	@echo "make run | test | test-slow | test-unit | test-integration | test-browser | test-faults | lint | format | typecheck | bench | bench-dispatch | bench-celery | bench-million | bench-fire-load | bench-shards | migrate | demo | clean"

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

services:
	@deploy/local/ensure-services.sh

# The tests also need RabbitMQ (celery jobs) and the nats-server program (nats jobs); the
# daemon itself needs neither unless its schedules use them.
test-services:
	@deploy/local/ensure-services.sh --for-tests

browser:
	@deploy/local/ensure-browser.sh

db: venv services
	$(PY) -m database.bootstrap

run: db
	$(PY) scheduler.py token ensure-local
	$(PY) scheduler.py run

migrate: venv
	$(PY) run_migrations.py

# The tests marked slow (a minute or so each) run in `make test-slow`; CI runs both.
test: venv test-services browser
	$(PY) -m pytest tests --ignore=tests/faults -m "not slow"

test-slow: venv test-services
	$(PY) -m pytest tests --ignore=tests/faults -m slow

test-faults: venv test-services
	$(PY) -m pytest tests/faults

test-unit: venv
	$(PY) -m pytest tests/unit

test-integration: venv test-services
	$(PY) -m pytest tests/integration

test-browser: venv test-services browser
	$(PY) -m pytest tests/browser

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: venv
	$(VENV)/bin/mypy

bench: venv test-services
	$(PY) -m bench

# Occurrences per second dispatched to JetStream through the run pipeline (issue 18).
bench-dispatch: venv test-services
	$(PY) -m bench.bench_dispatch

# Occurrences per second dispatched to RabbitMQ as Celery tasks through the run pipeline.
bench-celery: venv test-services
	$(PY) -m bench.bench_celery

# What a sustained fire rate costs PostgreSQL and Redis, per 1,000 fires/s (docs/scaling.md).
bench-fire-load: venv test-services
	$(PY) -m bench.bench_fire_load

# The varied load mix at 1,000,000 rows too (issue 19): long, and several GB of RAM.
bench-million: venv services
	BENCH_MILLION=1 $(PY) -m bench.bench_memory

# One instance holding all against four sharded ones (S=64, R=2), a kill -9 and its rebalance
# (issue 20). BENCH_SHARDS_N rows (default 100,000); not in `make bench`: it is long.
bench-shards: venv test-services
	$(PY) -m bench.bench_shards

demo: venv services
	deploy/local/demo.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis bench/results.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
