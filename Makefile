# Two commands set everything up on a fresh machine:
#   make run    create .venv, install, migrate, start the relay on SQLite (http://127.0.0.1:8080)
#   make test   create .venv with test tools, install the pinned CLIs (when npm exists), lint, run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The real command-line clients the tests drive (tests/clients), pinned by their lockfile.
CLIENTS := tests/clients

.PHONY: run test lint format mock-upstream clean web web-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/aiproxy serve

# Reinstalled only when the lockfile changes. Without npm (or when the install fails) the real-client
# tests skip with the reason; CI (AIPROXY_TEST_REQUIRE_SERVICES=1) makes them fail instead.
$(CLIENTS)/node_modules/.installed: $(CLIENTS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		(cd $(CLIENTS) && npm ci --no-audit --no-fund --loglevel=error) && touch $@ \
			|| echo "warning: npm ci in $(CLIENTS) failed: the real-client tests will not run"; \
	else \
		echo "note: npm not found: the real-client tests ($(CLIENTS)) will be skipped"; \
	fi

# Three workers, a test module each at a time (its module fixtures stay on one worker): most tests wait on
# relay and mock processes, so three keep two cores busy (measured: 14.5 min with three, 16.8 with two).
test: $(VENV)/.test $(CLIENTS)/node_modules/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q -n 3 --dist loadfile

lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(VENV)/.test
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# The web console: sources in web/, built into src/aiproxy/web/static (committed, so `make run`
# needs no Node.js). `make web` rebuilds it; `make web-check` fails when the committed build is not
# what the sources give (CI runs it when npm exists).
WEB := web
STATIC := src/aiproxy/web/static

$(WEB)/node_modules/.installed: $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web: $(WEB)/node_modules/.installed
	cd $(WEB) && npm run build

web-check: web
	@if [ -n "$$(git status --porcelain -- $(STATIC))" ]; then \
		git status --short -- $(STATIC); \
		echo "error: $(STATIC) differs from what web/ builds: run make web and commit the result"; exit 1; \
	fi
	@echo "web console assets match web/"

mock-upstream: $(VENV)/.runtime
	$(BIN)/aiproxy mock-upstream

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(CLIENTS)/node_modules $(WEB)/node_modules
