"""Hold-out check: 3D networks from libraries no test here uses, pruned as a user would.

Networks: pytorchvideo's X3D, CSN, R(2+1)D and Slow ResNet-50 (video), fepegar's ``unet``
3D U-Net and segmentation_models_pytorch_3d's U-Net on a ResNet-18 (medical
segmentation), timm_3d's ResNet-18 and EfficientNet-B0 (classification). Each is
exported by the torchscript and the dynamo exporter at batch 1 and pruned with
``ranp-onnx prune --data random --batch-size 2 --method ranp-f`` at 0.5 and 0.9; a row
says whether the command succeeded, whether the oracle passed, whether onnxruntime runs
the written model with the original's output shapes, and the MACs before and after.

The libraries are not dependencies of ranp-onnx. Install them beside the project's venv
without their dependencies, into a folder of their own::

    pip install --no-deps --target SITE pytorchvideo fvcore iopath unet yacs portalocker \
        tabulate termcolor tqdm timm timm-3d segmentation-models-pytorch-3d huggingface_hub \
        safetensors pretrainedmodels six munch
    python -m benchmarks.holdout SITE OUT [NAME ...]

They import torchvision for things these networks never use (RoIAlign, dataset classes);
PyPI's torchvision does not import beside the CPU torch of this project, so this script
writes a stand-in package ``SITE/torchvision`` whose names are empty classes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

_STAND_IN = """class _Meta(type):
    def __getattr__(cls, name):
        return name
def __getattr__(name):
    return _Meta(name, (), {})
"""


def write_torchvision_stand_in(site: Path) -> None:
    """Write ``site/torchvision``: every module these libraries import, of empty classes."""
    modules = ("", "ops", "ops/misc", "datasets", "models", "transforms", "transforms/functional")
    for module in modules:
        folder = site / "torchvision" / module
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(_STAND_IN)


def networks() -> Iterator[tuple[str, Callable[[], torch.nn.Module], tuple[int, ...]]]:
    """Yield (name, constructor, input shape) of each hold-out network."""
    import segmentation_models_pytorch_3d as smp
    import timm_3d
    from pytorchvideo.models import csn, r2plus1d, resnet, x3d
    from unet import UNet

    video = (1, 3, 8, 64, 64)
    yield (
        "pv-x3d",
        lambda: x3d.create_x3d(
            input_clip_length=4, input_crop_size=64, model_num_class=5, head_dim_out=64
        ),
        (1, 3, 4, 64, 64),
    )
    yield (
        "pv-csn",
        lambda: csn.create_csn(model_depth=50, model_num_class=5, head_pool_kernel_size=(1, 2, 2)),
        video,
    )
    yield "pv-r2plus1d", lambda: r2plus1d.create_r2plus1d(
        model_depth=50, model_num_class=5, head_pool_kernel_size=(1, 2, 2), stem_dim_out=16,
        dropout_rate=0.0,
    ), video  # fmt: skip
    yield (
        "pv-slow-r50",
        lambda: resnet.create_resnet(
            model_depth=50, model_num_class=5, head_pool_kernel_size=(8, 2, 2), stem_dim_out=16
        ),
        video,
    )
    yield "fepegar-unet3d", lambda: UNet(
        in_channels=1, out_classes=3, dimensions=3, num_encoding_blocks=3,
        out_channels_first_layer=8, normalization="batch", upsampling_type="linear",
        padding=True, activation="PReLU",
    ), (1, 1, 32, 32, 32)  # fmt: skip
    for name in ("resnet18", "efficientnet_b0"):
        yield (
            f"timm3d-{name}",
            lambda name=name: timm_3d.create_model(
                name, pretrained=False, num_classes=4, in_chans=1
            ),
            (1, 1, 32, 32, 32),
        )
    yield (
        "smp3d-unet-resnet18",
        lambda: smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=1, classes=3),
        (1, 1, 64, 64, 64),
    )


def export(module: torch.nn.Module, shape: tuple[int, ...], exporter: str, path: Path) -> None:
    """Export ``module`` in eval mode at ``shape`` with torch's ``exporter``."""
    example = torch.randn(*shape)
    names = {"input_names": ["input"], "output_names": ["output"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, **names)
        else:
            program = torch.onnx.export(
                module.eval(), (example,), dynamo=True, external_data=False, **names
            )
            assert program is not None
            program.save(str(path), external_data=False)


def total_macs(path: Path) -> int:
    """MACs of ``ranp-onnx report``."""
    command = ["ranp-onnx", "report", str(path), "--json"]
    run = subprocess.run(command, capture_output=True, text=True)
    return int(json.loads(run.stdout)["totals"]["macs"])


def prune_row(original: Path, shape: tuple[int, ...], sparsity: str) -> str:
    """Prune ``original`` at ``sparsity``; return what happened, in one line."""
    out = original.with_name(f"{original.stem}-{sparsity}.onnx")
    command = ["ranp-onnx", "prune", str(original), "--data", "random", "--batch-size", "2"]
    command += ["--sparsity", sparsity, "--method", "ranp-f", "-o", str(out), "--json", "--force"]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode:
        last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
        traceback = " TRACEBACK" if "Traceback" in run.stderr else ""
        return f"exit {run.returncode}{traceback}: {last[:160]}"
    validation = json.loads(run.stdout).get("validation", {})
    feed = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    sessions = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (original, out)
    ]
    shapes = [[o.shape for o in session.run(None, feed)] for session in sessions]
    before, after = total_macs(original), total_macs(out)
    return (
        f"exit 0, oracle conclusive={validation.get('conclusive')} max error "
        f"{validation.get('max_relative_error', float('nan')):.2e}, same output shapes "
        f"{shapes[0] == shapes[1]}, MACs {before / 1e9:.3f}G -> {after / 1e9:.3f}G "
        f"({1 - after / before:.1%} fewer)"
    )


def main(site: Path, out: Path, only: list[str]) -> None:
    """Run every hold-out network (or those named) and print a row per prune."""
    write_torchvision_stand_in(site)
    sys.path.insert(0, str(site))
    out.mkdir(parents=True, exist_ok=True)
    for name, make, shape in networks():
        if only and name not in only:
            continue
        for exporter in ("torchscript", "dynamo"):
            path = out / f"{name}-{exporter}.onnx"
            try:
                torch.manual_seed(0)
                export(make(), shape, exporter, path)
            except Exception as error:  # the library's export, not ranp-onnx
                print(f"{name} {exporter}: export failed ({type(error).__name__})", flush=True)
                continue
            for sparsity in ("0.5", "0.9"):
                row = prune_row(path, shape, sparsity)
                print(f"{name} {exporter} {sparsity}: {row}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
