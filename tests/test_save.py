"""Writing: atomic, never over an existing file without force, never over an input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import make_model, random_weights
from onnx import helper, numpy_helper

from ranp_onnx.errors import OutputExistsError, RanpError
from ranp_onnx.ir import runtime, save
from ranp_onnx.ir.load import load_model
from ranp_onnx.ir.save import check_output_path, save_model, write_text

WEIGHTS = random_weights(1, w=(8, 2, 3, 3, 3), b=(8,))


def conv_model() -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1] * 6)
    return make_model([node], [("x", [1, 2, 4, 4, 4])], [("y", None)], WEIGHTS)


def run(source: onnx.ModelProto | Path) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4, 4)).astype(np.float32)
    (y,) = runtime.make_session(source).run(None, {"x": x})
    return np.asarray(y)


def test_save_writes_an_ir_version_the_runtime_reads(tmp_path: Path) -> None:
    model = conv_model()
    model.ir_version = onnx.IR_VERSION
    path = save_model(model, tmp_path / "out.onnx")
    assert path == tmp_path / "out.onnx"
    written = onnx.load_model(str(path))
    assert written.ir_version == min(onnx.IR_VERSION, runtime.max_ir_version())
    assert model.ir_version == onnx.IR_VERSION  # the caller's proto is untouched
    np.testing.assert_array_equal(run(path), run(model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]


def test_save_keeps_an_older_ir_version(tmp_path: Path) -> None:
    model = conv_model()
    assert model.ir_version == 8
    assert onnx.load_model(str(save_model(model, tmp_path / "m.onnx"))).ir_version == 8


def test_save_is_atomic_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous content")

    def broken(model: onnx.ModelProto, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"half a mod")
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(conv_model(), target)
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary left


def test_external_data_round_trip(tmp_path: Path) -> None:
    model = conv_model()
    path = save_model(model, tmp_path / "slim.onnx", external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slim.onnx", "slim.onnx.data"]
    # The 1728-byte weight is stored outside, the 32-byte bias stays inline.
    assert (tmp_path / "slim.onnx.data").stat().st_size == 8 * 2 * 27 * 4
    raw = onnx.load_model(str(path), load_external_data=False)
    locations = {t.name: t.data_location for t in raw.graph.initializer}
    assert locations == {"w": onnx.TensorProto.EXTERNAL, "b": onnx.TensorProto.DEFAULT}
    loaded = load_model(path)
    assert loaded.external_data
    for tensor in loaded.proto.graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(tensor), WEIGHTS[tensor.name])
    np.testing.assert_array_equal(run(path), run(model))
    # Saved again from what was loaded, it stays the same.
    again = save_model(loaded.proto, tmp_path / "again.onnx", external_data=True)
    assert load_model(again).proto.graph == loaded.proto.graph


def test_external_data_with_only_small_tensors_writes_no_data_file(tmp_path: Path) -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    model = make_model(
        [node], [("x", [1, 1, 2, 2, 2])], [("y", None)], {"w": np.ones((1, 1, 1, 1, 1), np.float32)}
    )
    path = save_model(model, tmp_path / "tiny.onnx", external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]
    assert not load_model(path).external_data


def test_models_over_the_protobuf_limit_are_written_external(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(save, "PROTOBUF_LIMIT", 100)
    path = save_model(conv_model(), tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx.data").exists()
    assert load_model(path).external_data


def test_output_that_exists_needs_force(tmp_path: Path) -> None:
    target = tmp_path / "out.onnx"
    assert check_output_path(target, force=False) == target
    target.write_bytes(b"x")
    with pytest.raises(OutputExistsError) as raised:
        check_output_path(target, force=False)
    assert str(raised.value) == f"{target} exists; pass `force` to overwrite it"
    assert raised.value.exit_code == 1
    assert check_output_path(target, force=True) == target
    assert target.read_bytes() == b"x"  # checking writes nothing


def test_input_is_never_overwritten_even_with_force(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    onnx.save_model(conv_model(), str(source))
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.onnx"
    os.symlink(source, link)
    for spelling in (source, tmp_path / "sub" / ".." / "model.onnx", link):
        with pytest.raises(RanpError, match="refusing to overwrite the input file"):
            check_output_path(spelling, force=True, inputs=[source])
    assert check_output_path(tmp_path / "other.onnx", force=True, inputs=[source])


def test_output_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(RanpError, match="no such folder"):
        check_output_path(tmp_path / "missing" / "out.onnx", force=True)


def test_write_text_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "plan.json"
    write_text(target, "first")
    write_text(target, "second")
    assert target.read_text() == "second"

    def broken(self: Path, text: str) -> int:
        Path.write_bytes(self, text[:2].encode())
        raise OSError("interrupted")

    monkeypatch.setattr(Path, "write_text", broken)
    with pytest.raises(OSError, match="interrupted"):
        write_text(target, "third")
    monkeypatch.undo()
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
