# make demo / make test: each creates the virtualenv and installs the package on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test soak chaos lint bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,embedded]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sagaworks demo

# The console's browser tests drive Debian's Chromium; as root, install it when missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium chromium-driver; } || \
	  echo "install Debian's chromium and chromium-driver for the console's browser tests"

test: $(STAMP) browser
	$(BIN)/pytest

# The fault-injection suite, long form (a short form runs in `make test`): a private RabbitMQ
# node, separate worker and relay processes, faults on a schedule; prints the results table.
# Needs root or the rabbitmq user (to start the private node). CHAOS_ARGS="--orders 300".
# The long tests `make test` leaves out: the saga soak and the store-crash run (several
# minutes each, separate worker, relay and store processes).
soak: $(STAMP)
	$(BIN)/pytest -m slow

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/sagaworks bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
