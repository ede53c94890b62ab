# Mothership: `make run` runs the whole app, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test lint mutation install chromium vendor screenshots clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# The laptop runner: debug on unless DJANGO_DEBUG says otherwise (the settings default it off).
# With MCP_SERVERS unset, the demo tool server (mothership/demo_tools.py) is enabled as "demo".
run: export MOTHERSHIP_DEMO_TOOLS := [{"name": "demo", "command": "$(abspath $(PY))", "args": ["-m", "mothership.demo_tools"]}]
run: install
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} MCP_SERVERS="$${MCP_SERVERS-$$MOTHERSHIP_DEMO_TOOLS}" $(PY) manage.py runall --port $(PORT)

# The browser tests drive Debian's chromium (never a browser downloaded by a test tool).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The linters and the import contracts first: a red linter is a red build.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo --no-cache

test: lint chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# README's screenshots (docs/screenshots/): the browser tests marked `screenshots` write them all.
screenshots: install chromium
	MOTHERSHIP_SAVE_SCREENSHOTS=1 $(PY) -m pytest -q -m screenshots tests/browser

# Mutation testing of the modules that hold the invariants ([tool.mutmut] in pyproject.toml).
# Slow, so not part of `make test`: run it when those modules change; survivors go in docs/testing.md.
MUTATION_CHILDREN ?= 2
mutation: install
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children $(MUTATION_CHILDREN)
	$(VENV)/bin/mutmut results

# The browser libraries in static/vendor/ (and axe-core for the tests), pinned in the script.
vendor:
	$(PYTHON) scripts/vendor_static.py

clean:
	rm -rf $(VENV) var .pytest_cache mutants
