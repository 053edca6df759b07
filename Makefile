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

RUN := runs/$(ARCH)
# Main job on the CPU, in one run folder: export resnest50 (graph contract + ONNX Runtime verification), inspect,
# FP16 and INT8 (Q/DQ) versions, parity of each against eager, latency (eager vs ONNX Runtime, interleaved) and
# the report page runs/<arch>/report.html. The model is random-init (BatchNorm re-estimated), so INT8 calibrates
# on synthetic images and, its logits being near ties, parity judges it by cosine and KL, not top-1: the judgement
# follows from the artifact's provenance (docs/parity.md).
# TensorRT engines need a GPU: `resnest-deploy build ... --emit-script DIR` prepares them for a GPU host.
run: install
	$(BIN)/resnest-deploy export --arch $(ARCH) --output $(RUN)/$(ARCH).onnx
	$(BIN)/resnest-deploy inspect $(RUN)/$(ARCH).onnx
	$(BIN)/resnest-deploy quantize $(RUN)/$(ARCH).onnx --precision fp16
	$(BIN)/resnest-deploy quantize $(RUN)/$(ARCH).onnx --precision int8 --calib-data synthetic --calib-size 64
	$(BIN)/resnest-deploy parity $(RUN)/$(ARCH).onnx --samples 32 --report $(RUN)/$(ARCH).parity.json
	$(BIN)/resnest-deploy parity $(RUN)/$(ARCH).fp16.onnx --samples 32 --report $(RUN)/$(ARCH).fp16.parity.json
	$(BIN)/resnest-deploy parity $(RUN)/$(ARCH).int8.onnx --samples 32 --report $(RUN)/$(ARCH).int8.parity.json
	$(BIN)/resnest-deploy bench $(RUN)/$(ARCH).onnx $(RUN)/$(ARCH).fp16.onnx $(RUN)/$(ARCH).int8.onnx --batch 1,8 \
		--iters 10 --report $(RUN)/$(ARCH).bench.json
	$(BIN)/resnest-deploy build $(RUN)/$(ARCH).int8.onnx --emit-script $(RUN)/gpu-build
	$(BIN)/resnest-deploy report $(RUN)

# Two workers with one compute thread each (2 cores; the suite is dominated by single-threaded export tracing);
# tests of one exported arch share a worker and its export.
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadgroup

clean:
	rm -rf $(VENV) artifacts runs .pytest_cache
