# The README's two commands: `make run` (install + main job on the CPU) and `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARCH ?= resnest50
TRITON_PIN ?= nvidia-pytriton==0.7.0
# torch/torchvision builds that install from this machine kind's local wheel cache; override on other hosts.
ifeq ($(shell uname -m),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif

.PHONY: install run test mutation clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[cpu,serve,test]'
	# A real Triton server (2.51, python backend) for `serve` and the tests that start one: the binary only, as
	# nvidia-pytriton's numpy<2 pin would otherwise downgrade this environment.
	$(BIN)/python -m pip install --quiet --no-deps $(TRITON_PIN)
	# numpy 1.26 and this environment's Pillow for Triton's python stub, in a folder of their own (the stub ignores
	# PYTHONPATH and answered wrongly with numpy 2): resnest_deploy.serving.python_env holds the pins.
	$(BIN)/python -m resnest_deploy.serving.python_env
	touch $@

install: $(BIN)/.installed

RUN := runs/$(ARCH)
# Main job on the CPU, one command, in one run folder (runs/<arch>): export resnest50 (graph contract checked,
# verified against eager on ONNX Runtime), its FP16 and INT8 (Q/DQ) versions for TensorRT and an INT8 version for
# ONNX Runtime's CPU kernels (served by the Triton repository on CPU hosts), parity of each against eager,
# latency (eager vs ONNX Runtime, interleaved), a build bundle for the GPU host that will run it
# (runs/<arch>/targets/gpu-host/build.sh), a Triton model repository (runs/<arch>/model_repository) and the report
# page runs/<arch>/report.html. The model is random-init (BatchNorm re-estimated), so INT8 calibrates on synthetic
# images and, its logits being near ties, parity judges it by cosine and KL, not top-1: the judgement follows from
# the artifact's provenance (docs/parity.md). Run it again: only what changed is redone.
run: install
	$(BIN)/resnest-deploy deploy --arch $(ARCH) --calib-data synthetic --calib-size 64 --cpu-precision int8 --output $(RUN)

# Two workers with one compute thread each (2 cores; the suite is dominated by single-threaded export tracing);
# tests of one exported arch share a worker and its export.
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadgroup

# Mutation testing (mutmut) of the modules that only the TensorRT double and CPU tests guard, against the tests that
# claim to guard them ([tool.mutmut] in pyproject.toml): not part of `make test`. Writes its table into
# docs/testing.md; the surviving mutants' names are in .cache/mutation/survivors.json.
mutation: install
	$(BIN)/python tests/mutation.py --doc

clean:
	rm -rf $(VENV) artifacts runs .pytest_cache
