"""(d) Peak resident memory of ``prune`` against a plain torch training step, and the estimate.

Each measurement runs in its own child process and reads that process's ``ru_maxrss``
(``os.wait4``), so imports, the model and every allocation count, as a user sees them:

- ``ranp-onnx prune`` on one batch (scoring, selection, rewrite, validation, writing);
- one training step of the original torch module on a batch of the same size
  (``python -m benchmarks.child train-step``);
- the scoring passes alone (``python -m benchmarks.child score``), beside the estimate
  of :func:`ranp_onnx.scoring.memory.estimate_scoring_memory`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import python_module, ranp_onnx, run_child


def run_memory(
    model: Path, data: Path, width: float, preset: str, shape: tuple[int, ...], folder: Path
) -> dict[str, Any]:
    """Peak RSS (MB) of prune, of a torch training step and of scoring, and the estimate."""
    from ranp_onnx.analysis.shapes import analyse
    from ranp_onnx.scoring.memory import estimate_scoring_memory

    prune = run_child(
        ranp_onnx(
            "prune", str(model), "--data", str(data), "--batches", "1", "--ignore-index", "255",
            "--sparsity", "0.8", "-o", str(folder / "memory-slim.onnx"), "--force", "--quiet",
        )
    )  # fmt: skip
    dims = ",".join(str(d) for d in shape)
    step = run_child(
        python_module("benchmarks.child", "train-step", "unet3d-15", preset, str(width), dims, "1")
    )
    scoring = run_child(python_module("benchmarks.child", "score", str(model), str(data), "1"))
    estimate = estimate_scoring_memory(analyse(str(model)), 1)
    return {
        "prune_mb": prune.peak_rss_mb,
        "prune_s": prune.seconds,
        "train_step_mb": step.peak_rss_mb,
        "scoring_mb": scoring.peak_rss_mb,
        "estimate_mb": estimate.total_mb,
        "ratio": prune.peak_rss_mb / step.peak_rss_mb,
    }


def run_brats(folder: Path, shape: tuple[int, int, int, int]) -> dict[str, Any]:
    """Export the full-width BraTS UNet at ``shape`` and prune it on one batch on CPU."""
    from ranp_onnx.analysis.shapes import analyse
    from ranp_onnx.scoring.memory import available_memory, estimate_scoring_memory

    from .common import segmentation_data

    model = folder / "brats.onnx"
    dims = ",".join(str(d) for d in shape)
    run_child(
        ranp_onnx(
            "export", "unet3d-15", "--preset", "brats", "--input-shape", dims, "-o", str(model),
            "--force",
        )
    )  # fmt: skip
    data = segmentation_data(folder / "brats.npz", shape, 5, 1)
    command = ranp_onnx(
        "prune", str(model), "--data", str(data), "--ignore-index", "255", "--sparsity", "0.8",
        "--device", "cpu", "-o", str(folder / "brats-slim.onnx"), "--force", "--quiet",
    )  # fmt: skip
    result = run_child(command, timeout=3600)
    estimate = estimate_scoring_memory(analyse(str(model)), 1)
    available = available_memory()
    return {
        "shape": shape,
        "peak_rss_mb": result.peak_rss_mb,
        "seconds": result.seconds,
        "estimate_mb": estimate.total_mb,
        "available_mb": available / (1 << 20) if available else float("nan"),
        "output": result.output.strip().splitlines()[-3:],
    }
