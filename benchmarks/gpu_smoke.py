"""GPU smoke test: scoring on CUDA, validation and ``report --measure`` on onnxruntime's CUDA EP.

``python -m benchmarks.gpu_smoke`` on a machine with an NVIDIA GPU (and onnxruntime-gpu
for the onnxruntime half). Without a CUDA device it says so and exits 0, so it can run
anywhere. On a GPU it checks, on a small 3D-UNet:

1. scoring on CUDA gives the statistics scoring on CPU gives (TF32 off, to 1e-3);
2. ``ranp-onnx prune --device auto`` scores on CUDA and validates on the CUDA execution
   provider where onnxruntime has it, and names both in its output;
3. ``ranp-onnx report --measure --device auto`` measures on the CUDA execution provider;
4. with two or more GPUs, ``prune`` under ``torchrun --nproc-per-node 2`` (NCCL) writes
   the same plan as one process.

Exit status 1 and a line saying what failed if a check fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _cli(*args: str) -> str:
    command = [sys.executable, "-c", "from ranp_onnx.cli.main import main; main()", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"FAILED: ranp-onnx {' '.join(args)}\n{done.stderr[-2000:]}")
    return done.stdout


def _scores_match(model: Path, data: Path) -> None:
    import torch

    from ranp_onnx.analysis.channels import analyse_channels
    from ranp_onnx.analysis.shapes import analyse
    from ranp_onnx.scoring.data import open_data
    from ranp_onnx.scoring.statistics import accumulate_gradients

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    graph = analyse(str(model))
    channels = analyse_channels(graph)
    source = open_data(data, graph, ignore_index=255)
    stats = {
        device: accumulate_gradients(
            channels, source, "cross-entropy", ignore_index=255, device=device
        )
        for device in ("cpu", "cuda")
    }
    for cpu, cuda in zip(stats["cpu"].magnitude, stats["cuda"].magnitude):
        scale = float(np.abs(cpu).max()) or 1.0
        if np.abs(cpu - cuda).max() > 1e-3 * scale:
            raise SystemExit("FAILED: CUDA scores differ from CPU scores")
    print(f"ok   scoring on {stats['cuda'].device} equals scoring on cpu (1e-3 of scale)")


def main() -> None:
    """Run the checks, or say why they are skipped."""
    import onnxruntime
    import torch

    if not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device (this script is for machines with a GPU)")
        return
    ort_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    from ranp_onnx.ir.save import save_model
    from ranp_onnx.zoo import build_model, export_built

    from .common import segmentation_data

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        shape = (1, 32, 32, 32)
        built = build_model("unet3d-15", width_mult=0.25, input_shape=shape)
        model = save_model(export_built(built), folder / "unet.onnx")
        data = segmentation_data(folder / "train.npz", shape, built.config.classes, 2)
        _scores_match(model, data)
        common = ["--data", str(data), "--ignore-index", "255", "--sparsity", "0.8"]
        out = _cli("prune", str(model), *common, "-o", str(folder / "slim.onnx"))
        if "scored        on cuda" not in out:
            raise SystemExit(f"FAILED: prune did not score on CUDA:\n{out}")
        provider = "CUDAExecutionProvider" if ort_cuda else "CPUExecutionProvider"
        if provider not in out:
            raise SystemExit(f"FAILED: validation did not run on {provider}:\n{out}")
        print(f"ok   prune scored on CUDA and validated on {provider}")
        report = json.loads(_cli("report", str(folder / "slim.onnx"), "--measure", "--json"))
        print(f"ok   report --measure ran on {report['measured']['provider']}")
        if not ort_cuda:
            print("note onnxruntime has no CUDAExecutionProvider: pip install 'ranp-onnx[gpu]'")
        if torch.cuda.device_count() >= 2:
            _nccl(model, common, folder)


def _nccl(model: Path, common: list[str], folder: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    cli = Path(sys.executable).with_name("ranp-onnx")
    plans = []
    for ranks, label in ((1, "one"), (2, "two")):
        subprocess.run(
            [str(torchrun), "--nproc-per-node", str(ranks), str(cli), "prune", str(model),
             *common, "-o", str(folder / f"{label}.onnx"), "--plan", str(folder / f"{label}.json"),
             "--quiet"],
            check=True, timeout=1200,
        )  # fmt: skip
        plans.append(json.loads((folder / f"{label}.json").read_text()))
    if [g["kept"] for g in plans[0]["groups"]] != [g["kept"] for g in plans[1]["groups"]]:
        raise SystemExit("FAILED: two NCCL ranks chose another plan than one process")
    print("ok   two NCCL ranks give the plan of one process")


if __name__ == "__main__":
    main()
