# Two commands do all the set-up:  `make lab` opens the course, `make test` checks it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mmcourse-installed
PORT   ?= 8888

# Keep TensorFlow's C++ start-up chatter out of notebooks and test output.
export TF_CPP_MIN_LOG_LEVEL := 3

# JupyterLab refuses to start as root unless told; containers often run as root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test student venv benchmark clean

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) $(ROOT_FLAG) $(LAB_ARGS)

test: $(STAMP)
	MMCOURSE_PROFILE=quick $(BIN)/python -m pytest -n 2 --dist loadscope $(PYTEST_ARGS)

# The student edition: every notebook without its solutions, into student/
student: $(STAMP)
	$(BIN)/mmcourse student --out student

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
