"""Every command over the zoo and the third-party networks: success, or one line and 1, 2 or 3.

Each network is exported as a user exports it, at batch 1, with both torch exporters
(torchscript and dynamo), and every command runs on it: ``report``, ``explain``,
``prune`` with RANP-f scored at batch sizes 1, 2 and 4, ``apply`` and ``validate`` of
the plan made at batch 2, and ``search-sparsity``. Anything but success must be one line
on stderr, exit 1, 2 or 3, and nothing written; a traceback (any exception but the exit)
fails. At batch size 2 every network must prune, and the written model must run in
onnxruntime with the original's output shapes and fewer MACs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from builders import export_module
from click.testing import CliRunner, Result
from pruning_models import SMALL, calibrate_batchnorm

from ranp_onnx.analysis.costs import count_costs
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.cli.main import cli
from ranp_onnx.ir.save import save_model
from ranp_onnx.zoo import build_model

nets = pytest.importorskip("monai.networks.nets")

CLASSES = 3
EXPORTERS = ("torchscript", "dynamo")
BATCH_SIZES = (1, 2, 4)


def _zoo(name: str) -> Callable[[], tuple[torch.nn.Module, tuple[int, ...]]]:
    def build() -> tuple[torch.nn.Module, tuple[int, ...]]:
        width, shape = SMALL[name]
        module = build_model(name, width_mult=width, input_shape=shape, classes=CLASSES).module
        calibrate_batchnorm(module, shape)
        return module, shape

    return build


def _monai(make: Callable[[], torch.nn.Module], shape: tuple[int, ...]) -> Callable:
    def build() -> tuple[torch.nn.Module, tuple[int, ...]]:
        return make(), shape

    return build


#: name -> builder of (module in eval mode or not, input shape without the batch).
NETWORKS: dict[str, Callable[[], tuple[torch.nn.Module, tuple[int, ...]]]] = {
    **{f"zoo-{name}": _zoo(name) for name in sorted(SMALL)},
    "UNet": _monai(
        lambda: nets.UNet(3, 1, CLASSES, (4, 8, 16), (2, 2), num_res_units=1), (1, 16, 16, 16)
    ),
    "BasicUNet": _monai(
        lambda: nets.BasicUNet(3, 1, CLASSES, features=(4, 4, 8, 8, 16, 4)), (1, 32, 32, 32)
    ),
    "DynUNet": _monai(
        lambda: nets.DynUNet(3, 1, CLASSES, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16]),
        (1, 16, 16, 16),
    ),
    "AttentionUnet": _monai(
        lambda: nets.AttentionUnet(3, 1, CLASSES, (4, 8, 16), (2, 2)), (1, 16, 16, 16)
    ),
    "SegResNet": _monai(
        lambda: nets.SegResNet(3, init_filters=8, in_channels=1, out_channels=CLASSES),
        (1, 16, 16, 16),
    ),
    "DenseNet": _monai(
        lambda: nets.DenseNet(3, 1, CLASSES, init_features=8, growth_rate=4, block_config=(2, 2)),
        (1, 16, 16, 16),
    ),
    # 32^3, so that its last BatchNorms see more than one value per channel at batch 1.
    "ResNet10": _monai(
        lambda: nets.resnet10(
            spatial_dims=3, n_input_channels=1, num_classes=CLASSES, widen_factor=0.25
        ),
        (1, 32, 32, 32),
    ),
    "UNETR": _monai(
        lambda: nets.UNETR(
            1, CLASSES, img_size=32, feature_size=4, hidden_size=48, mlp_dim=96, num_heads=4
        ),
        (1, 32, 32, 32),
    ),
}
CASES = [(name, exporter) for name in NETWORKS for exporter in EXPORTERS]


@functools.cache
def _export(name: str, exporter: str) -> bytes:
    torch.manual_seed(0)
    module, shape = NETWORKS[name]()
    module.eval()
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(1))
    return export_module(module, x, exporter=exporter, input_names=["input"]).SerializeToString()


def run(*arguments: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in arguments])


def check(result: Result, *written: Path) -> bool:
    """True on success; else the contract: one line, exit 1, 2 or 3, nothing written."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback: {result.exception!r}\n{result.output}")
    if result.exit_code == 0:
        return True
    assert result.exit_code in (1, 2, 3), result.output
    assert result.stderr.startswith("error: "), result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for path in written:
        assert not path.exists(), path
    return False


def _runs_like(path: Path, original: onnx.ModelProto) -> None:
    """The written model runs in onnxruntime with the original's output shapes."""
    shape = analyse(original).input_shapes["input"]
    feeds = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    want = onnxruntime.InferenceSession(original.SerializeToString()).run(None, feeds)
    got = onnxruntime.InferenceSession(str(path)).run(None, feeds)
    assert [w.shape for w in want] == [g.shape for g in got]


@pytest.mark.parametrize(("name", "exporter"), CASES, ids=[f"{n}-{e}" for n, e in CASES])
def test_every_command_succeeds_or_says_why_in_one_line(
    name: str, exporter: str, tmp_path: Path
) -> None:
    try:
        model = onnx.load_from_string(_export(name, exporter))
    except Exception as error:  # the exporter itself, not ranp-onnx
        pytest.skip(f"torch cannot export {name} with {exporter}: {type(error).__name__}")
    source = save_model(model, tmp_path / "model.onnx")
    check(run("report", source))
    check(run("explain", source))
    outcomes = {}
    for batch in BATCH_SIZES:
        out, plan = tmp_path / f"slim{batch}.onnx", tmp_path / f"plan{batch}.json"
        result = run(
            "prune", source, "--data", "random", "--batch-size", batch, "--batches", "1",
            "--sparsity", "0.5", "--method", "ranp-f", "--device", "cpu", "-o", out,
            "--plan", plan,
        )  # fmt: skip
        outcomes[batch] = check(result, out, plan)
    assert outcomes[2], "pruning at batch size 2 must work"
    slim, plan = tmp_path / "slim2.onnx", tmp_path / "plan2.json"
    _runs_like(slim, model)
    before = count_costs(analyse(model)).totals.macs
    assert count_costs(analyse(str(slim))).totals.macs < before
    applied = tmp_path / "applied.onnx"
    check(run("apply", source, "--plan", plan, "-o", applied), applied)
    check(run("validate", slim, "--reference", source, "--plan", plan))
    search = ["search-sparsity", source, "--data", "random", "--batch-size", "2"]
    check(run(*search, "--batches", "1", "--method", "l1"))
