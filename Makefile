# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo loop test test-fast lint format repro mlflow-ui prefect-ui clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel first: a loose `torch` would pull several GB of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install  ## build the offline demo's stand-ins, then run the whole pipeline on the embedded defaults
	$(VENV)/bin/slmops demo build --profile demo
	$(VENV)/bin/slmops run --profile demo

loop: install  ## after `make demo`: serve poc, send shifted traffic, drift -> retrain -> champion vs challenger -> promote
	$(VENV)/bin/slmops loop demo --profile loop

test: install  ## the whole test suite, including one end-to-end smoke flow
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

repro: install  ## the same stages through DVC (dvc.yaml and params.yaml are generated from the stage registry)
	$(VENV)/bin/slmops dvc --profile demo
	PATH=$(abspath $(VENV))/bin:$$PATH DVC_NO_ANALYTICS=1 DVC_SITE_CACHE_DIR=$(CURDIR)/.dvc-site-cache $(VENV)/bin/dvc repro

mlflow-ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns.db --port 5000

prefect-ui: install
	PREFECT_HOME=$(CURDIR)/.prefect PREFECT_SERVER_ANALYTICS_ENABLED=false $(VENV)/bin/prefect server start

clean:
	rm -rf data/raw data/prepared data/synthetic data/traffic data/traffic_labelled models reports logs mlruns.db mlartifacts .prefect .slmops .cache
