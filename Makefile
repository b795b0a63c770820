# Set-up and the two main jobs. `make run` and `make test` each do the whole set-up first.
VENV ?= .venv
PYTHON ?= python3
# torch wheels: these two lie on disk on the project's machines; elsewhere override, e.g.
# `make test TORCH=torch TORCHVISION=torchvision`.
TORCH ?= torch==2.14.1
TORCHVISION ?= torchvision==0.29.1
BIN := $(VENV)/bin

.PHONY: install data run test lint

$(BIN)/kdbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH) $(TORCHVISION)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/kdbench

# FashionMNIST comes from Debian's packages: on a machine whose apt lists are empty, fetch
# once more after refreshing them.
data: install
	$(BIN)/kdbench data fetch || { apt-get update -qq && $(BIN)/kdbench data fetch; }

run: data
	$(BIN)/kdbench run benchmarks.toml --profile quick
	$(BIN)/kdbench report benchmarks.toml --profile quick

test: data
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
