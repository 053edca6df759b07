# The README's two commands: `make run` (install + main job on the CPU) and `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARCH ?= resnest50
# torch/torchvision builds that install from this machine kind's local wheel cache; override on other hosts.
ifeq ($(shell uname -m),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif

.PHONY: install run test clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[cpu,test]'
	touch $@

install: $(BIN)/.installed

# Main job on the CPU: export resnest50 (graph contract + ONNX Runtime verification), then inspect the file.
run: install
	$(BIN)/resnest-deploy export --arch $(ARCH) --output runs/$(ARCH)/$(ARCH).onnx
	$(BIN)/resnest-deploy inspect runs/$(ARCH)/$(ARCH).onnx

# Two workers: the suite is dominated by single-threaded export tracing.
test: install
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) artifacts runs .pytest_cache
