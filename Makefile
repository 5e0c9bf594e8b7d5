# Two commands for a fresh machine:  `make demo`  and  `make test`.
# Both create .venv and install prodgen with the CPU build of torch (constraints/cpu.txt).
# GPU users: `make install TORCH_CONSTRAINTS=` after installing a CUDA build of torch, or plain
# `pip install -e .` into an environment that already has one.

PYTHON ?= python3
VENV ?= .venv
TORCH_CONSTRAINTS ?= constraints/cpu.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.prodgen-installed

.PHONY: install demo demo-weights test test-fast check lint typecheck format clean

# pip prints one line per package it collects and installs (no bars: they garble logs), so the
# minutes of a first install are never silent.
PIP_INSTALL := $(BIN)/python -m pip install --progress-bar off --disable-pip-version-check

$(STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	@echo "== install 1/3: a virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "== install 2/3: prodgen and its dependencies (torch, onnxruntime, tritonserver, …: minutes on a fresh machine)"
	$(PIP_INSTALL) $(if $(TORCH_CONSTRAINTS),-c $(TORCH_CONSTRAINTS)) -e '.[test]'
	@echo "== install 3/3: TensorRT type stubs (for make check)"
	$(PIP_INSTALL) --no-deps tensorrt-stubs==10.13.0.35.1
	touch $@
	@echo "== install: done; commands are in $(BIN)"

install: $(STAMP)

# Its own repository (demo-output/repository) and free loopback ports; GRPC_PORT=N to choose.
demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

# Re-train the demo checkpoints in demo/weights (minutes each on 2 cores; see demo/README.md).
demo-weights: install
	$(BIN)/python -m demo.train_upscaler
	$(BIN)/python -m demo.train_cutout
	$(BIN)/python -m demo.train_look
	$(BIN)/python -m demo.train_catalogue_gan
	$(BIN)/python -m demo.train_catalogue_diffusion

test: install
	$(BIN)/python -m pytest

# Everything but the end-to-end tests (those start the embedded Triton server): minutes less.
# pytest exits 5 when a selection holds no test; that is no failure here.
test-fast: install
	$(BIN)/python -m pytest -m "not e2e" || [ $$? -eq 5 ]

# Lint, formatting and types, as CI runs them (config in pyproject.toml).
# mypy cannot follow the editable install's import hook that maps export/ to prodgen.export
# (and so on), so it reads the package through a tree of links laid out as the import names.
TYPECHECK := $(VENV)/typecheck
check: lint typecheck

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/prodgen
	for entry in prodgen/*; do ln -s "$(abspath .)/$$entry" $(TYPECHECK)/prodgen/; done
	for part in export model_repository serve client bench; do ln -s "$(abspath .)/$$part" $(TYPECHECK)/prodgen/$$part; done
	$(BIN)/python scripts/tensorrt_stubs.py $(TYPECHECK)/stubs
	MYPYPATH=$(TYPECHECK):$(TYPECHECK)/stubs:tests $(BIN)/mypy -p prodgen
	MYPYPATH=$(TYPECHECK):$(TYPECHECK)/stubs:tests $(BIN)/mypy demo tests scripts

# Apply ruff's formatting and its safe fixes.
format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# What make created; `models/` is the user's own repository (the demo never writes there) and stays.
clean:
	rm -rf $(VENV) demo-output
