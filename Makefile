# Every target sets itself up on a fresh machine: a virtual environment in .venv, the CPU build of
# torch first (a plain `torch` requirement would pull a multi-GB CUDA build), then the package
# with its Meta-World extra, so that `make test` tests it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench results clean

# The metaworld extra pins mujoco 3.3.0: a venv that had a newer mujoco (split into the
# mujoco-core/-studio packages) gets a clean mujoco first, else the downgrade leaves both behind.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip uninstall -q -y mujoco mujoco-core mujoco-studio mujoco-studio-wasm 2>/dev/null || true
	$(PY) -m pip install -q -e '.[dev,metaworld]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy  # files and strictness: [tool.mypy] in pyproject.toml

test: lint
	$(PY) -m pytest -q -n 2 --dist load --durations=15
	$(PY) scripts/sabotage.py

demo: $(STAMP)
	$(PY) scripts/demo.py

bench: $(STAMP)
	$(PY) scripts/bench_envs.py

# every README results number against its file in results/ (no training); see scripts/reproduce.py
results: $(STAMP)
	$(PY) scripts/reproduce.py --check

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .mypy_cache
