# Two set-up commands for a fresh machine with Python 3.11, pip and make:
#   make demo   - create .venv, install pinned dependencies, run the main job on the embedded data
#   make test   - create .venv, install pinned dependencies (+ test tools), run the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test venv lint bench-train bench-triggers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt pyproject.toml
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/poisonlab demo --out demo-output --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench-train: $(STAMP)
	$(BIN)/python benchmarks/train_cifar10.py --data-dir ../shared/datasets/cifar10-jpeg

bench-triggers: $(STAMP)
	$(BIN)/python benchmarks/triggers.py --data-dir ../shared/datasets/cifar10-jpeg

clean:
	rm -rf $(VENV) demo-output .pytest_cache
