# The two commands a newcomer needs: `make demo` and `make test`. Nothing else to install first.
# Another interpreter: `make PYTHON=python3.12 test` (3.11 to 3.13; rebuilds .venv with it).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# The optional spec layer (tests/test_spec.py) runs when OPENAI_SPEC names OpenAI's openapi.yaml.
OPENAI_SPEC ?= $(realpath ../shared/openai-spec/openapi.yaml)
export OPENAI_SPEC

.PHONY: demo test lint fmt bench chromium postgres venv

# PYTHON given and .venv built by another version: build it again, from scratch.
VENV_FLAGS :=
ifneq ($(origin PYTHON),file)
version = $(shell $(1) -c 'import sys; print(*sys.version_info[:2], sep=".")' 2>/dev/null)
ifneq ($(call version,$(PY)),$(call version,$(PYTHON)))
.PHONY: $(VENV)/.installed
VENV_FLAGS := --clear
endif
endif

$(VENV)/.installed: requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(None if (3, 11) <= sys.version_info[:2] <= (3, 13) else \
		f"Python 3.11 to 3.13 is needed, {sys.executable} is {sys.version.split()[0]}")'
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

venv: $(VENV)/.installed  ## .venv/ alone, for `.venv/bin/python manage.py …` (README)

demo: $(VENV)/.installed  ## web + worker + sandbox with demo data on SQLite
	$(PY) manage.py demo

test: $(VENV)/.installed chromium postgres lint  ## the whole suite against a PostgreSQL it starts
	$(PY) -m tests.postgres sh -c '$(PY) manage.py makemigrations --check --dry-run --settings=tests.settings && \
		$(PY) -m pytest $(PYTEST_ARGS)'

lint: $(VENV)/.installed  ## ruff (lint + format) and mypy (configured in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.installed postgres  ## prints figures; see tests/benchmarks/README.md
	DEBUG=true $(PY) -m tests.postgres sh -c '$(PY) tests/benchmarks/run_all.py'

chromium:  ## Debian's Chromium for the browser tests (Playwright never downloads its own)
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

postgres: $(VENV)/.installed  ## PostgreSQL's server binaries for the tests (Debian's, if missing)
	@$(PY) -m tests.postgres --install
