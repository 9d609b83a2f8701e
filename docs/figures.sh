#!/usr/bin/env bash
# The README's figures and the numbers beside them, measured with the installed ranp-onnx.
# Run from the repository root: bash docs/figures.sh [demo|shapenet]  (default: both).
# demo: seconds. shapenet: the paper's 3D-UNet at 64^3 scored on 8 volumes (about 20
# minutes on one CPU core).
set -euo pipefail
BIN=${BIN:-.venv/bin}
WORK=${WORK:-build/figures}
mkdir -p "$WORK"
what=${1:-all}

if [[ $what == all || $what == demo ]]; then
    # make demo's 3D-UNet (width x0.5, 32^3), scored on 4 generated part-segmentation
    # volumes and pruned with RANP-f at 80%.
    "$BIN/ranp-onnx" export unet3d-15 --preset shapenet --width-mult 0.5 --input-shape 1,32,32,32 \
        -o "$WORK/unet32.onnx" --force
    "$BIN/python" -m examples.segmentation3d.data --count 4 --size 32 --split score \
        -o "$WORK/score32.npz"
    "$BIN/ranp-onnx" prune "$WORK/unet32.onnx" --data "$WORK/score32.npz" --ignore-index 255 \
        --batch-size 2 --sparsity 0.8 --method ranp-f -o "$WORK/slim32.onnx" \
        --plan "$WORK/plan32.json" --plot docs/ranp-demo.png --convention ranp-paper --force
fi

if [[ $what == all || $what == shapenet ]]; then
    # The ShapeNet 3D-UNet at 64^3, scored on 8 generated part-segmentation volumes
    # (examples/segmentation3d, family shapes-a, split score; empty voxels 255, ignored).
    "$BIN/ranp-onnx" export unet3d-15 --preset shapenet -o "$WORK/unet64.onnx" --force
    "$BIN/python" -c "
import numpy as np
from examples.segmentation3d.data import generate
volumes = generate('shapes-a', 8, size=64, split='score')
np.savez('$WORK/score64.npz', inputs=volumes.inputs, labels=volumes.labels)
"
    "$BIN/ranp-onnx" prune "$WORK/unet64.onnx" --data "$WORK/score64.npz" --ignore-index 255 \
        --sparsity 0.7824 --method ranp-f -o "$WORK/slim64.onnx" --plan "$WORK/plan64.json" \
        --plot docs/unet3d-shapenet-ranp-f.png --convention ranp-paper --force
    "$BIN/ranp-onnx" validate "$WORK/slim64.onnx" --runtime openvino \
        --reference "$WORK/unet64.onnx" --plan "$WORK/plan64.json"
fi
