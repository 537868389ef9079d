# The two commands a newcomer needs: `make demo` and `make test`. Nothing else to install first.
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test lint fmt bench chromium

$(VENV)/.installed: requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

demo: $(VENV)/.installed  ## web + worker + sandbox with demo data on SQLite
	$(PY) manage.py demo

test: $(VENV)/.installed chromium lint  ## the whole suite against a PostgreSQL it starts itself
	$(PY) -m tests.postgres sh -c '$(PY) manage.py makemigrations --check --dry-run --settings=tests.settings && \
		$(PY) -m pytest $(PYTEST_ARGS)'

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.installed  ## prints figures; see tests/benchmarks/README.md
	DEBUG=true $(PY) -m tests.postgres sh -c '$(PY) tests/benchmarks/run_all.py'

chromium:  ## Debian's Chromium for the browser tests (Playwright never downloads its own)
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
