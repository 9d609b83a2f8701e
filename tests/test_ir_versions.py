"""IR versions: the onnx checker's and onnxruntime's may be above, equal to or below each other.

Every test runs with the installed pair, then with the three relations simulated by
lowering one limit or both below the installed ones (which the real checker and runtime
then accept). Spies record the IR version of everything given to the checker and to an
onnxruntime session: neither may ever see one above its limit.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import make_model, random_weights
from onnx import helper
from oracle import random_prune

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.errors import UnsupportedModelError
from ranp_onnx.ir import runtime
from ranp_onnx.ir.load import load_model
from ranp_onnx.ir.save import save_model
from ranp_onnx.reporting.profiling import measure

WEIGHTS = random_weights(2, w=(4, 2, 3, 3, 3), b=(4,), w2=(3, 4, 1, 1, 1))
X = np.random.default_rng(3).standard_normal((1, 2, 4, 4, 4)).astype(np.float32)


BASE = make_model(
    [
        helper.make_node("Conv", ["x", "w", "b"], ["h"], pads=[1] * 6),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"]),
    ],
    [("x", [1, 2, 4, 4, 4])],
    [("y", None)],
    WEIGHTS,
)


def conv_model(ir_version: int) -> onnx.ModelProto:
    """A two-conv model (built once: building checks it) at ``ir_version``."""
    model = onnx.ModelProto()
    model.CopyFrom(BASE)
    model.ir_version = ir_version
    return model


def ir_of(source: object) -> int:
    """The IR version of a proto, serialised proto or model file (its data not read)."""
    if isinstance(source, onnx.ModelProto):
        return int(source.ir_version)
    if isinstance(source, bytes):
        return int(onnx.load_from_string(source).ir_version)
    return int(onnx.load_model(str(source), load_external_data=False).ir_version)


@dataclass
class Limits:
    """The IR versions in force, and those the checker and the runtime were given."""

    checker: int
    runtime: int
    checked: list[int] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)

    @property
    def readable(self) -> int:
        return max(self.checker, self.runtime)


@pytest.fixture(params=["installed", "runtime below", "equal", "runtime above"])
def limits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Limits:
    checker, most = runtime.checker_ir_version(), runtime.max_ir_version()
    runtime.max_opset()  # probed (and cached) at the installed limits
    low = min(checker, most)
    pairs = {
        "installed": (checker, most),
        "runtime below": (low, low - 1),
        "equal": (low, low),
        "runtime above": (low - 1, low),
    }
    result = Limits(*pairs[request.param])
    monkeypatch.setattr(runtime, "checker_ir_version", lambda: result.checker)
    monkeypatch.setattr(runtime, "max_ir_version", lambda: result.runtime)
    check_model, open_session = onnx.checker.check_model, runtime._open_session

    def checked(model: object, *args: object, **kwargs: object) -> None:
        result.checked.append(ir_of(model))
        check_model(model, *args, **kwargs)  # type: ignore[arg-type]

    def opened(ort: object, source: str | bytes, *args: object) -> object:
        result.opened.append(ir_of(source))
        return open_session(ort, source, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx.checker, "check_model", checked)
    monkeypatch.setattr(runtime, "_open_session", opened)
    return result


def test_the_probe_finds_the_runtimes_limit_above_or_below_the_start() -> None:
    assert runtime._highest(lambda v: v <= 17, 3, 14) == 17
    assert runtime._highest(lambda v: v <= 11, 3, 14) == 11
    assert runtime._highest(lambda v: v <= 14, 3, 14) == 14
    assert runtime._highest(lambda v: False, 3, 14) is None
    assert runtime._highest(lambda v: True, 3, 14) == 14 + runtime.PROBE_SPAN
    installed = runtime.max_ir_version()
    assert runtime._accepts(installed, 11) and not runtime._accepts(installed + 1, 11)


def test_every_ir_version_either_tool_reads_loads_and_runs(limits: Limits) -> None:
    versions = list(range(8, limits.readable + 1))
    outputs = []
    for ir_version in versions:
        model = conv_model(ir_version)
        loaded = load_model(model)
        assert loaded.proto.ir_version == ir_version  # not changed in memory
        (y,) = runtime.make_session(loaded.proto).run(None, {"x": X})
        outputs.append(y)
        assert model.ir_version == ir_version  # the caller's proto is untouched
    assert outputs[0].shape == (1, 3, 4, 4, 4)
    for y in outputs[1:]:
        np.testing.assert_array_equal(y, outputs[0])
    assert limits.checked == [min(v, limits.checker) for v in versions]
    assert limits.opened == [min(v, limits.runtime) for v in versions]


def test_a_file_above_the_checkers_ir_is_checked_from_a_copy_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: Limits
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    (tmp_path / "data").mkdir()
    versions = sorted({limits.checker, limits.readable})
    for ir_version in versions:
        path = tmp_path / f"ir{ir_version}.onnx"
        onnx.save_model(
            conv_model(ir_version),
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"data/ir{ir_version}.bin",
            size_threshold=0,
        )
        files = {p: p.read_bytes() for p in (path, tmp_path / f"data/ir{ir_version}.bin")}
        loaded = load_model(path)
        assert loaded.external_data and loaded.proto.ir_version == ir_version
        assert {p: p.read_bytes() for p in files} == files
    assert limits.checked == [limits.checker] * len(versions)
    assert list(scratch.iterdir()) == []  # the checked copy and its stand-ins are gone


def test_an_ir_version_above_both_tools_is_refused(tmp_path: Path, limits: Limits) -> None:
    newer = limits.readable + 1
    model = conv_model(newer)
    path = tmp_path / "newer.onnx"
    onnx.save_model(model, str(path))
    for source, where in ((model, "test"), (path, str(path))):
        with pytest.raises(UnsupportedModelError) as raised:
            load_model(source)
        assert str(raised.value) == (
            f"{where}: the model has IR version {newer}; the installed onnxruntime reads IR "
            f"versions up to {limits.runtime} and onnx up to {limits.checker}"
        )
    assert limits.checked == []


def test_a_model_is_saved_at_an_ir_version_the_runtime_reads(
    tmp_path: Path, limits: Limits
) -> None:
    for ir_version in (8, limits.readable):
        model = conv_model(ir_version)
        path = save_model(model, tmp_path / f"ir{ir_version}.onnx")
        assert ir_of(path) == min(ir_version, limits.runtime)
        assert model.ir_version == ir_version
        (y,) = runtime.make_session(load_model(path).proto).run(None, {"x": X})
        (expected,) = runtime.make_session(model).run(None, {"x": X})
        np.testing.assert_array_equal(y, expected)
    assert max(limits.checked) <= limits.checker
    assert max(limits.opened) <= limits.runtime


def test_an_external_data_model_is_measured_from_its_file_or_a_copy_the_runtime_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: Limits
) -> None:
    sources: list[object] = []
    make_session = runtime.make_session

    def spy(source: object, **kwargs: object) -> object:
        sources.append(source)
        return make_session(source, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime, "make_session", spy)
    for ir_version in sorted({min(limits.checker, limits.runtime), limits.readable}):
        path = tmp_path / f"ir{ir_version}" / "model.onnx"
        path.parent.mkdir()
        onnx.save_model(
            conv_model(ir_version),
            str(path),
            save_as_external_data=True,
            location="weights.bin",
            size_threshold=0,
        )
        sources.clear()
        result = measure(analyse(path), runs=1, warmup=0, device="cpu")
        assert result.provider == "CPUExecutionProvider"
        assert len(sources) == 2 and sources[0] == sources[1]
        if ir_version <= limits.runtime:  # never serialised: one over 2 GB could not be
            assert sources[0] == path
        else:  # a copy at the runtime's IR version, in a folder removed after
            assert sources[0] != path and not Path(str(sources[0])).exists()
    assert limits.opened[-2:] == [min(limits.readable, limits.runtime)] * 2
    assert max(limits.checked) <= limits.checker


def test_a_pruned_model_is_checked_and_validated_at_the_versions_each_tool_reads(
    limits: Limits,
) -> None:
    model = conv_model(limits.readable)
    run = random_prune(model, 0.5)
    assert run.pruned.ir_version == min(limits.readable, limits.runtime)
    assert run.macs_after < run.macs_before and run.error <= 1e-4
    assert model.ir_version == limits.readable
    assert max(limits.checked) <= limits.checker
    assert max(limits.opened) <= limits.runtime
