# Two commands for a fresh machine:  `make demo`  and  `make test`.
# Both create .venv and install prodgen with the CPU build of torch (constraints/cpu.txt).
# GPU users: `make install TORCH_CONSTRAINTS=` after installing a CUDA build of torch, or plain
# `pip install -e .` into an environment that already has one.

PYTHON ?= python3
VENV ?= .venv
TORCH_CONSTRAINTS ?= constraints/cpu.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.prodgen-installed

.PHONY: install demo test clean

$(STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(if $(TORCH_CONSTRAINTS),-c $(TORCH_CONSTRAINTS)) -e '.[test]'
	touch $@

install: $(STAMP)

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) models demo-output
