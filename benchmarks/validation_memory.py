"""Peak memory of the validation oracle with and without onnxruntime's CPU arena.

``python -m benchmarks.validation_memory [SIZE]`` exports the full-width ShapeNet UNet at
1 x SIZE^3 (default 48), prunes it with ``--method l1`` at 0.8 (no gradient passes, so
the validation dominates the peak) and validates it in a child process, once with the
oracle's sessions as they are (no arena) and once with the arena on, and prints each
child's peak resident memory and validation time.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .common import python_module, run_child


def main(size: int = 48) -> None:
    """Print peak RSS and validation seconds with and without the arena."""
    import onnx

    from ranp_onnx.zoo import build_model, export_built

    with tempfile.TemporaryDirectory() as name:
        model = Path(name) / "unet.onnx"
        built = build_model("unet3d-15", preset="shapenet", input_shape=(1, size, size, size))
        onnx.save(export_built(built), model)
        print("| oracle sessions | peak RSS MB | validation s |")
        print("|---|---|---|")
        for arena in ("no-arena", "arena"):
            run = run_child(python_module("benchmarks.child", "validate", str(model), arena))
            print(f"| {arena} | {run.peak_rss_mb:.0f} | {run.output.split()[-1]} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)
