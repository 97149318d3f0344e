# interpedit: `make demo` and `make test` each work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision come from the package registry's standard builds (they run on CPU as well as
# CUDA). Local wheel folders and pip config files are ignored for these two so that both come from the
# same build: a CPU-only torch next to the registry's torchvision fails to load torchvision's operators.
TORCH_SPEC ?= torch==2.13.0 torchvision==0.28.0
REGISTRY_PIP := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(BIN)/pip

.PHONY: help install demo test test-slow test-all clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(REGISTRY_PIP) install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install interpedit with its test dependencies

demo: install  ## train the main job on the embedded shapes world and report what it produced
	$(BIN)/python train.py fit --config configs/shapes/clip.yaml --trainer.default_root_dir runs/demo

test: install  ## run the default test suite (no network, < 10 min on 2 cores)
	$(BIN)/python -m pytest

test-slow: install  ## run the slow tests (DDP, SIGKILL resume, training to quality)
	$(BIN)/python -m pytest -m slow

test-all: install  ## run every test
	$(BIN)/python -m pytest -m "slow or not slow"

clean:  ## remove the virtual environment and run outputs
	rm -rf $(VENV) lightning_logs runs demo_output .pytest_cache
