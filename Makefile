# One virtualenv at .venv/, created and filled when missing or when pyproject.toml changes.
# VENV=/path/to/venv uses an existing virtualenv as it is and installs nothing into it (a clone
# of the project can borrow a checkout's environment without repointing its editable install).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py

.PHONY: run demo test test-fast lint format venv simulate

ifeq ($(VENV),.venv)
venv: $(VENV)/.installed
else
venv:
	@test -x $(BIN)/python || { echo "VENV=$(VENV) has no bin/python" >&2; exit 1; }
endif

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## Command one: check that Postgres and Redis answer (saying how to start them if not), create
## the database if missing, migrate, then run web, Celery worker, Celery beat (and the Stripe
## sandbox when STRIPE_SECRET_KEY is unset) in the foreground until Ctrl-C, printing the staff
## login last, once they are up. PORT picks the web port (default 8000).
run: venv
	$(MANAGE) check_dependencies
	$(MANAGE) ensure_database
	$(MANAGE) migrate --no-input
	$(MANAGE) ensure_dev_staff
	$(MANAGE) run_service

## While `make run` is up in another terminal: pay an order of three sellers and refund it,
## through the sandbox and the service, and print what happened to each seller transfer.
demo: venv
	$(BIN)/python -m demo

## Command two: lint, format check and the whole test suite against Postgres.
test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

## The inner loop while coding: lint, and the tests that start no process (no worker processes,
## no gunicorn, no subprocess start-up checks), in two processes (pytest-xdist), on test
## databases kept between runs. CI runs
## `make test`, which runs everything.
test-fast: venv
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow" --reuse-db -q -n 2

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Random histories against the real service and the sandbox (docs/simulation.md):
## HISTORIES=10000 make simulate, or SEED=<seed> make simulate to replay and shrink one.
simulate: venv
	$(BIN)/pytest tests/simulation/campaign.py -q -s
