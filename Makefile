# styleengine developer targets.  Everything runs inside .venv (created on demand).
#   make install   create .venv, install the core and every plugin (editable)
#   make test      install if needed, run the whole suite
#   make demo      install if needed, run the offline demo
#   make bench     run the standard benchmark matrix (CPU)

PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip
STAMP   := $(VENV)/.installed
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
# The template third-party plugin(s) in examples/: installed from their folders like any third party's.
EXAMPLES := $(sort $(dir $(wildcard examples/*/pyproject.toml)))
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install install-gpu install-tensorrt test test-fast demo bench clean

install: $(STAMP)

# torch is installed first and exactly (2.13.0, the CPU wheel here); every later install sees it
# satisfied and pulls no CUDA packages.  torchvision is never installed.
$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) $(wildcard examples/*/pyproject.toml) tests/plugins/test_style/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[cpu,dev,serving,diffusion,bench]" $(foreach p,$(PLUGINS) $(EXAMPLES),-e $(p)) -e tests/plugins/test_style
	@if $(BIN)/python -c "import torchvision" 2>/dev/null; then echo "torchvision must not be installed" >&2; exit 1; fi
	touch $(STAMP)

# GPU extras replace onnxruntime (the two wheels share the `onnxruntime` module and break each other).
install-gpu: install
	$(PIP) uninstall -y onnxruntime
	$(PIP) install -q -e ".[gpu]"

install-tensorrt: install
	$(PIP) uninstall -y onnxruntime
	$(PIP) install -q -e ".[tensorrt]"

# `engine plugins --check` first: a plugin with errors (unknown hooks, broken declarations) fails CI at once.
test: install
	$(BIN)/python -m styleengine plugins --check
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/python -m styleengine.demo

bench: install
	$(BIN)/python benchmarks/run_matrix.py

clean:
	rm -rf $(VENV) build dist *.egg-info export/artifacts demo-output runs
