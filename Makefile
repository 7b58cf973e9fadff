# The two set-up commands of the README: `make test` and `make demo`.
# Both create .venv if it is missing and install the package into it; nothing else is needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch/torchvision are installed first and pinned so pip takes the releases that lie on local disk
# here; override on other machines, e.g. `make test TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,render,embree,report
# Type-checked with mypy --strict: the pure maths (geometry, losses, metrics), config, the data, eval and
# methods packages and the EMA helper; the list grows as modules are made strict-clean.
MYPY_TARGETS := $(wildcard src/sie/geometry.py src/sie/geometry_np.py src/sie/losses.py src/sie/config.py src/sie/eval src/sie/data src/sie/methods src/sie/nn/ema.py)
LINT_PATHS := $(wildcard src tests benchmarks)

.PHONY: install test demo lint clean FORCE

# The install is redone when pyproject.toml, TORCH_SPEC or EXTRAS change (the last two via .venv/.spec).
INSTALL_SPEC := $(TORCH_SPEC) [$(EXTRAS)]

$(VENV)/.spec: FORCE
	@mkdir -p $(VENV)
	@if [ "$$(cat $@ 2>/dev/null)" != "$(INSTALL_SPEC)" ]; then echo "$(INSTALL_SPEC)" > $@; fi

$(VENV)/.installed: pyproject.toml $(VENV)/.spec
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy $(MYPY_TARGETS)

test: lint
	$(PY) -m pytest

demo: install
	$(VENV)/bin/sie demo

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
