# Every target sets up .venv from pyproject.toml first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install train test test-fast lint format ui clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(VENV)/bin/gan-ray train gan_ray/configs/ring8.yaml

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check gan_ray tests bench
	$(VENV)/bin/ruff format --check gan_ray tests bench

format: $(STAMP)
	$(VENV)/bin/ruff format gan_ray tests bench
	$(VENV)/bin/ruff check --fix gan_ray tests bench

clean:
	rm -rf $(VENV) outputs ray_results mlflow.db mlartifacts optuna.db
