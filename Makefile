# Two entry points: `make serve` (embedded service) and `make test` (whole test suite).
# Both create the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,teacher]'
	touch $@

.PHONY: install serve test
install: $(VENV)/.installed

serve: $(VENV)/.installed
	$(VENV)/bin/hapvr serve

test: $(VENV)/.installed
	$(PY) -m pytest -q
