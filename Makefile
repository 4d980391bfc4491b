# Every target sets up .venv from pyproject.toml first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install sweep train sample serve test test-fast lint docs format ui screenshots bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: the ring8 sweep on a local Ray, recorded in ./mlflow.db, champion in the registry.
sweep: $(STAMP)
	$(VENV)/bin/gan-ray sweep search_spaces/ring8.yaml

# One training run of the default config, in this process.
train: $(STAMP)
	$(VENV)/bin/gan-ray train gan_ray/configs/ring8.yaml

# 2,500 samples from the ring8 champion, as a scatter plot.
sample: $(STAMP)
	$(VENV)/bin/gan-ray sample --model models:/gan_ray-ring8@champion -n 2500 --seed 0 --out champion_ring8.png

# The champion behind MLflow's scoring server (nothing of gan_ray is used): POST noise to
# http://127.0.0.1:5001/invocations, see docs/serving.md. `uvicorn` must be on PATH: the venv's.
serve: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH MLFLOW_TRACKING_URI=sqlite:///$(CURDIR)/mlflow.db \
		$(VENV)/bin/mlflow models serve -m models:/gan_ray-ring8@champion --env-manager local --host 127.0.0.1 -p 5001

# The MLflow UI on the local store: http://127.0.0.1:5000
# The URL's workflowType opens the "Model training" view (MLflow 3's UI starts in its GenAI view).
ui: $(STAMP)
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# Headless-Chromium screenshots of the UI on a tiny sweep (needs Debian's chromium): ui_screenshots/
screenshots: $(STAMP)
	PYTHON=$(PY) bench/ui_screenshots.sh ui_screenshots

bench: $(STAMP)
	$(PY) bench/throughput.py

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# ruff (style, complexity) and import-linter (the floors: core <- training <- ray | tracking <- api).
lint: $(STAMP)
	$(VENV)/bin/ruff check gan_ray tests bench
	$(VENV)/bin/ruff format --check gan_ray tests bench
	$(VENV)/bin/lint-imports

# The manual (docs/): mkdocs --strict, so a broken link, a missing page or an unreadable docstring fails.
# Its config sits in docs/.mkdocs/ (mkdocs refuses one in the pages' own folder; the top level holds none);
# the site goes under .venv/, which git ignores: open .venv/site/index.html.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --config-file docs/.mkdocs/mkdocs.yml --site-dir $(abspath $(VENV))/site

format: $(STAMP)
	$(VENV)/bin/ruff format gan_ray tests bench
	$(VENV)/bin/ruff check --fix gan_ray tests bench

clean:
	rm -rf $(VENV) outputs ray_results mlflow.db mlruns mlartifacts optuna.db champion_ring8.png ui_screenshots
