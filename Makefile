# Quick start:  make demo   (installs into .venv, runs the default study)
#               make test   (installs into .venv with the dev extra, runs the tests)
# TORCH pins the CPU wheel that this project's machines carry; on a GPU box use e.g. TORCH=torch.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev,onnx
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck ci install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.core: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: $(VENV)/.core
	$(BIN)/poolstride compare

install-dev: $(VENV)/.dev

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy

ci: lint typecheck test

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
