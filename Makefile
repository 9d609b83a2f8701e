# make demo / make test: set up .venv (CPU torch first, then the package) and run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# onnxruntime-gpu where nvidia-smi sees a GPU, onnxruntime otherwise (they cannot coexist).
# The plots and openvino extras too, so that the tests draw the figures and check the
# pruned zoo models in OpenVINO.
GPU    := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
EXTRA  := $(if $(GPU),gpu,cpu)
OTHER  := $(if $(GPU),onnxruntime,onnxruntime-gpu)
STAMP  := $(VENV)/.installed-$(EXTRA)
DEMO   := demo

.PHONY: all setup demo test lint typecheck unit bench clean

all: test

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	-$(BIN)/python -m pip uninstall -q -y $(OTHER) 2>/dev/null
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[$(EXTRA),dev,plots,openvino]"
	rm -f $(VENV)/.installed-*
	touch $@

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

lint: $(STAMP)
	$(BIN)/ruff check ranp_onnx tests examples benchmarks
	$(BIN)/ruff format --check ranp_onnx tests examples benchmarks
	$(BIN)/lint-imports

# mypy checks the package as it installs (cli/ and exporters/ under ranp_onnx), and the
# examples against it.
typecheck: $(STAMP)
	rm -rf .typecheck
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation --target .typecheck . >/dev/null
	cp -r examples .typecheck/examples
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml -p ranp_onnx -p examples

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# The benchmarks (about 40 minutes on 2 cores; not part of test): writes benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[bench]"
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .typecheck build $(DEMO) .pytest_cache .mypy_cache .ruff_cache .hypothesis
