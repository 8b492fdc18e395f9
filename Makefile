# Two commands do all the set-up:  `make lab` opens the course, `make test` checks it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mmcourse-installed
PORT   ?= 8888
DEMO_PORT ?= 8866
# The browser tests drive the system's chromium (never a downloaded one).
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
export CHROMIUM

# Keep TensorFlow's C++ start-up chatter out of notebooks and test output.
export TF_CPP_MIN_LOG_LEVEL := 3

# JupyterLab refuses to start as root unless told; containers often run as root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test test-browser demo student slides venv benchmark clean

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) $(ROOT_FLAG) $(LAB_ARGS)

# With chromium on the machine the tests include the browser tests (tests/browser/); without it
# they are left out and one line says so.
test: $(STAMP)
ifeq ($(CHROMIUM),)
	@echo "browser tests skipped: no chromium found (sudo apt-get install chromium, or make test CHROMIUM=/path/to/chromium); then make test-browser"
	MMCOURSE_PROFILE=quick $(BIN)/python -m pytest -n 2 --dist loadscope --ignore=tests/browser $(PYTEST_ARGS)
else
	MMCOURSE_PROFILE=quick $(BIN)/python -m pytest -n 2 --dist loadscope $(PYTEST_ARGS)
endif

# Only the browser tests: widgets in JupyterLab, the Voilà demo, the slides (screenshots in build/browser-screenshots/)
test-browser: $(STAMP)
	MMCOURSE_PROFILE=quick $(BIN)/python -m pytest -n 2 --dist loadscope tests/browser $(PYTEST_ARGS)

# The demo app: the course's widgets on one page, served by Voilà, each on a shipped model
demo: $(STAMP)
	MMCOURSE_PROFILE=quick $(BIN)/voila notebooks/demo.ipynb --port=$(DEMO_PORT) --no-browser $(VOILA_ARGS)

# The student edition: every notebook without its solutions, into student/
student: $(STAMP)
	$(BIN)/mmcourse student --out student

# Static reveal.js slides of every notebook, into slides/ (they work offline; RISE presents live)
slides: $(STAMP)
	$(BIN)/mmcourse slides --out slides

venv: $(STAMP)

# Re-install when the dependencies change; an existing environment is reused.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

benchmark: $(STAMP)
	$(BIN)/python benchmarks/shapes_generation.py
	$(BIN)/python benchmarks/captioner_flops.py

clean:
	rm -rf $(VENV) .pytest_cache
