"""The GPU paths, exercised on CPU: device and provider selection, and the smoke script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ranp_onnx.errors import DataError, UnsupportedModelError
from ranp_onnx.ir import runtime
from ranp_onnx.scoring import statistics as score

ROOT = Path(__file__).resolve().parents[1]


def _fake_onnxruntime(monkeypatch: pytest.MonkeyPatch, providers: list[str]) -> None:
    fake = SimpleNamespace(get_available_providers=lambda: providers)
    monkeypatch.setattr(runtime, "import_onnxruntime", lambda: fake)


def test_onnxruntime_cuda_is_chosen_automatically_where_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_onnxruntime(monkeypatch, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert runtime.available_providers("auto") == [runtime.CUDA_PROVIDER, "CPUExecutionProvider"]
    assert runtime.available_providers("cuda")[0] == runtime.CUDA_PROVIDER
    assert runtime.available_providers("cpu") == ["CPUExecutionProvider"]
    # TF32 off: the validation keeps its 1e-4 tolerance on GPUs.
    assert runtime.CUDA_PROVIDER == ("CUDAExecutionProvider", {"use_tf32": "0"})


def test_onnxruntime_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_onnxruntime(monkeypatch, ["CPUExecutionProvider"])
    assert runtime.available_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(UnsupportedModelError, match="no CUDAExecutionProvider"):
        runtime.available_providers("cuda")


def test_torch_scoring_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert score._torch_device("auto") == torch.device("cpu")
    with pytest.raises(DataError, match="no CUDA device"):
        score._torch_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert score._torch_device("auto") == torch.device("cuda")
    assert score._torch_device("cpu") == torch.device("cpu")


def test_gpu_smoke_script_skips_cleanly_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run python -m benchmarks.gpu_smoke by hand")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("skipped: torch sees no CUDA device")
