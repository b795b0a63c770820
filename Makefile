# Set-up and the two main jobs. `make run` and `make test` each do the whole set-up first.
VENV ?= .venv
PYTHON ?= python3
# torch wheels: these two lie on disk on the project's machines; elsewhere override, e.g.
# `make test TORCH=torch TORCHVISION=torchvision`.
TORCH ?= torch==2.14.1
TORCHVISION ?= torchvision==0.29.1
BIN := $(VENV)/bin
# Cells run side by side in this many processes (`make run JOBS=1` for one at a time).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: install data browser postgres run test lint tox

# The venv takes ~7 GB (torch's CUDA build); say so plainly rather than let pip fail half-way.
NEED_GB ?= 8
$(BIN)/kdbench: pyproject.toml
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ ! -d $(VENV) ] && [ "$$free" -lt $(NEED_GB) ]; then \
		echo "kdbench: $$free GB free here, the environment needs about $(NEED_GB) GB (torch); free some disk or set NEED_GB" >&2; \
		exit 2; fi
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
	$(BIN)/kdbench run benchmarks.toml --profile quick --jobs $(JOBS)
	$(BIN)/kdbench report benchmarks.toml --profile quick

# Debian's headless Chromium and its driver, for the test that looks at the MLflow UI in a real
# browser; installed once (root), after refreshing the apt lists when they are empty.
browser:
	test -x /usr/bin/chromedriver || apt-get install -y -qq chromium chromium-driver \
		|| { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

# Debian's PostgreSQL, for the tests of a tracking server backed by it (the tests start
# their own server, as the postgres user when run as root).
postgres:
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || apt-get install -y -qq postgresql \
		|| { apt-get update -qq && apt-get install -y -qq postgresql; }

test: data browser postgres
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Every Python of tox.ini. tox looks for python3.10 ... python3.13 on PATH: pyenv's
# interpreters go first there (tox does not see through pyenv's shims).
PYENV_BINS := $(shell ls -d $(HOME)/.pyenv/versions/*/bin 2>/dev/null | tr '\n' ':')
tox: data browser
	PATH="$(PYENV_BINS)$$PATH" $(BIN)/tox
