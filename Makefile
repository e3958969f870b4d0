# One virtualenv at .venv/, created and filled when missing or when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py

.PHONY: run test lint format venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## Command one: create the database if missing, migrate, print a staff login, start the service.
run: venv
	$(MANAGE) ensure_database
	$(MANAGE) migrate --no-input
	$(MANAGE) ensure_dev_staff
	$(MANAGE) runserver 127.0.0.1:8000

## Command two: lint, format check and the whole test suite against Postgres.
test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
