# make demo / make test: set up .venv (CPU torch first, then the package) and run.
# make setup installs exactly the versions of requirements/constraints.txt (the lock: what
# the suite passed with); make lock rewrites it from the newest releases; make test-latest
# runs the whole check against the newest releases in a venv of its own.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := -m pip install -q --disable-pip-version-check
LOCK   := requirements/constraints.txt
# The torch that make lock and make test-latest install first: where a CPU wheel of it
# is at hand (this machine's), no CUDA wheels are downloaded.
TORCH  ?= 2.13.0
LOCKENV := .venv-lock
LATEST  := .venv-latest
# onnxruntime-gpu where nvidia-smi sees a GPU, onnxruntime otherwise (they cannot coexist).
# The plots and openvino extras too, so that the tests draw the figures and check the
# pruned zoo models in OpenVINO.
GPU    := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
EXTRA  := $(if $(GPU),gpu,cpu)
OTHER  := $(if $(GPU),onnxruntime,onnxruntime-gpu)
EXTRAS := $(EXTRA),dev,plots,openvino
STAMP  := $(VENV)/.installed-$(EXTRA)
# What the checks need first: the locked .venv (test-latest empties it for its own venv).
SETUP  := $(STAMP)
DEMO   := demo

.PHONY: all setup demo test lint typecheck unit bench clean lock test-latest

all: test

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP) -c $(LOCK) torch
	-$(BIN)/python -m pip uninstall -q -y $(OTHER) 2>/dev/null
	$(BIN)/python $(PIP) -c $(LOCK) -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

# The newest releases that pyproject.toml allows, resolved in a throwaway venv (torch at
# $(TORCH)) and frozen into the lock, onnxruntime-gpu pinned beside onnxruntime. Run
# make test after it: the lock is only what the suite passed with once make test passes.
lock:
	rm -rf $(LOCKENV)
	$(PYTHON) -m venv $(LOCKENV)
	$(LOCKENV)/bin/python $(PIP) torch==$(TORCH)
	$(LOCKENV)/bin/python $(PIP) ".[cpu,dev,plots,openvino,bench]"
	$(LOCKENV)/bin/python requirements/pins.py freeze --twin onnxruntime=onnxruntime-gpu > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCKENV)

# The whole check against the newest releases (torch at $(TORCH)), in $(LATEST), made
# anew each time; then which installed versions differ from the lock. Fails as the
# check does: a release that breaks the suite is found here, not by a newcomer.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python $(PIP) torch==$(TORCH)
	$(LATEST)/bin/python $(PIP) -e ".[$(EXTRAS)]"
	$(MAKE) --no-print-directory VENV=$(LATEST) SETUP= lint typecheck unit; status=$$?; \
		$(LATEST)/bin/python requirements/pins.py compare $(LOCK); exit $$status

# RANP on a task: a 3D-UNet (width x0.5, 32^3) scored on generated part-segmentation volumes
# (examples/segmentation3d; empty voxels are labelled 255 and ignored), pruned at 80%.
demo: $(STAMP)
	mkdir -p $(DEMO)
	$(BIN)/ranp-onnx export unet3d-15 --preset shapenet --width-mult 0.5 --input-shape 1,32,32,32 -o $(DEMO)/unet.onnx --force
	$(BIN)/python -m examples.segmentation3d.data --family shapes-a --count 4 --size 32 --split score -o $(DEMO)/score.npz
	$(BIN)/ranp-onnx report $(DEMO)/unet.onnx --convention ranp-paper
	$(BIN)/ranp-onnx explain $(DEMO)/unet.onnx
	$(BIN)/ranp-onnx prune $(DEMO)/unet.onnx --data $(DEMO)/score.npz --ignore-index 255 --batch-size 2 \
		--sparsity 0.8 --method ranp-f -o $(DEMO)/slim.onnx --plan $(DEMO)/plan.json --plot $(DEMO)/slim.png --force
	$(BIN)/ranp-onnx report $(DEMO)/slim.onnx --compare $(DEMO)/unet.onnx --convention ranp-paper --measure
	$(BIN)/ranp-onnx validate $(DEMO)/slim.onnx --runtime openvino --reference $(DEMO)/unet.onnx \
		--plan $(DEMO)/plan.json

lint: $(SETUP)
	$(BIN)/ruff check ranp_onnx tests examples benchmarks requirements
	$(BIN)/ruff format --check ranp_onnx tests examples benchmarks requirements
	$(BIN)/lint-imports

# mypy checks the package as it installs, and the examples against it.
typecheck: $(SETUP)
	rm -rf .typecheck
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation --target .typecheck . >/dev/null
	cp -r examples .typecheck/examples
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml -p ranp_onnx -p examples

unit: $(SETUP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# The benchmarks (about 40 minutes on 2 cores; not part of test): writes benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python $(PIP) -c $(LOCK) -e ".[bench]"
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(LOCKENV) $(LATEST) .typecheck build $(DEMO) .pytest_cache .mypy_cache .ruff_cache .hypothesis
