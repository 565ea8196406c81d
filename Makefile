# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test gpu-check lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Runtime only (no TensorFlow): what a user of the tracker installs.
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e ".[fast]"
	touch $@

# Everything the tests exercise: training and export need TensorFlow.
$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e ".[fast,train,dev]"
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(VENV)/bin/iristrack run --out out/demo.jsonl --video-out out/demo.mp4

test: $(VENV)/.test
	$(PY) -m pytest -q

gpu-check: $(VENV)/.runtime
	$(VENV)/bin/iristrack check-gpu

lint: $(VENV)/.test
	$(VENV)/bin/ruff check tracker training tests
	$(VENV)/bin/ruff format --check tracker training tests

clean:
	rm -rf $(VENV) out
