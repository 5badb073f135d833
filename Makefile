# xecreco: `make test` and `make demo` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
STAMP  := $(VENV)/.installed

.PHONY: venv test test-all demo bench docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Install the CPU build of torch only when torch is not importable in the venv (a plain
# `pip install torch` would pull a multi-GB CUDA build), then the package with test extras.
$(STAMP): $(PY) pyproject.toml
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

demo: $(STAMP)
	$(VENV)/bin/xecreco demo -o demo_output

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

docs: $(STAMP)
	$(PY) -m xecreco.cli.reference > docs/cli.md

clean:
	rm -rf build dist *.egg-info demo_output benchmarks/out
