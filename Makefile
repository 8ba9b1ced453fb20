# The two commands: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: demo demo-allauth test lint typecheck check wheel-check messages bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py stepup sync --reason "make demo"
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

# The same demo with allauth.mfa as the source of factors (project/settings_allauth.py, db-allauth.sqlite3).
demo-allauth: export DJANGO_SETTINGS_MODULE = project.settings_allauth
demo-allauth: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py stepup sync --reason "make demo-allauth"
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check stepup

typecheck: $(STAMP)
	$(BIN)/mypy stepup

check: lint typecheck
	DJANGO_SETTINGS_MODULE=project.settings $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=project.settings $(BIN)/python manage.py check --fail-level WARNING
	DJANGO_SETTINGS_MODULE=project.settings_allauth $(BIN)/python manage.py check --fail-level WARNING

wheel-check: $(STAMP)
	bash scripts/check_wheel.sh

# Extract stepup's strings into stepup/locale/{de,fr} and compile the .mo files (needs GNU gettext).
messages: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/messages.sh

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info
