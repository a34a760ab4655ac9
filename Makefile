# Two entry points (see README): `make quickstart` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.paddle_lk-installed

.PHONY: env quickstart test demo bench

env: $(STAMP)

$(STAMP): requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	SKLEARN_ALLOW_DEPRECATED_SKLEARN_PACKAGE_INSTALL=True $(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

quickstart: env
	$(PY) tools/train.py -c configs/quickstart.yaml --overwrite

demo: env
	$(PY) tools/demo.py

test: env
	$(PY) -m pytest -q tests
