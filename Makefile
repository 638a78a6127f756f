# Two commands set everything up on a fresh machine:
#   make run    create .venv, install, migrate, start the relay on SQLite (http://127.0.0.1:8080)
#   make test   create .venv with test tools, lint, run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint format mock-upstream clean

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

test: $(VENV)/.test
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q

lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(VENV)/.test
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

mock-upstream: $(VENV)/.runtime
	$(BIN)/aiproxy mock-upstream

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
