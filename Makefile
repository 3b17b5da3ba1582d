# Quick start:  make demo   (installs into .venv, runs the default study)
#               make test   (installs into .venv with the dev extra, runs the tests)
#               make test-vision   (second venv .venv-vision with torchvision + timm; runs the `vision` tests)
# TORCH pins the CPU wheel that this project's machines carry; on a GPU box use e.g. TORCH=torch.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev,onnx
BIN := $(VENV)/bin
# torchvision needs its matching torch: 0.29.1 goes with torch 2.14.1 (a CUDA build, ~5.5 GB; runs on CPU).
# Both pins go into the same pip command as the extras, so timm cannot pull another torch/torchvision.
VISION_VENV ?= .venv-vision
VISION_TORCH ?= torch==2.14.1 torchvision==0.29.1 timm==1.0.31
VISION_EXTRAS ?= dev,onnx,vision,timm
VBIN := $(VISION_VENV)/bin

.PHONY: demo test test-vision lint typecheck ci install-dev install-vision clean

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

$(VBIN)/python:
	$(PYTHON) -m venv $(VISION_VENV)
	$(VBIN)/pip install -q --upgrade pip

$(VISION_VENV)/.vision: $(VBIN)/python pyproject.toml
	$(VBIN)/pip install -q $(VISION_TORCH) -e ".[$(VISION_EXTRAS)]"
	touch $@

install-vision: $(VISION_VENV)/.vision

# Only the tests that need torchvision/timm (marker `vision`, applied in tests/conftest.py); there a skip for a
# missing torchvision/timm/onnx is a failure, so this target cannot pass by skipping.
test-vision: $(VISION_VENV)/.vision
	POOLSTRIDE_REQUIRE_VISION=1 $(VBIN)/python -m pytest -q -m vision

clean:
	rm -rf $(VENV) $(VISION_VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
