# The two set-up commands of the README:
#   make demo   install gancraft and run the main job on the bundled example models -> out/demo/
#   make test   install gancraft and run the test suite
PYTHON ?= python3
ARCH := $(shell uname -m)
# torch and torchvision must come as a matching pair (lpips and open_clip import torchvision)
ifeq ($(ARCH),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif
STAMP := .installed

.PHONY: install demo test bench man clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PYTHON) -m pip install -q $(TORCH_PINS)
	$(PYTHON) -m pip install -q -e '.[test]'
	@touch $@

demo: install
	$(MAKE) -C recipes demo PYTHON=$(PYTHON)

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/run_all.py --json out/bench.json

man: install
	$(PYTHON) -m gancraft.cli.manpage man/
