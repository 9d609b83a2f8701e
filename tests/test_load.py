"""Loading: paths and protos, external data and its safety, runtime limits, bad files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import make_model, random_weights
from onnx import helper, numpy_helper

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.errors import ModelLoadError, UnsupportedModelError
from ranp_onnx.ir import load, runtime
from ranp_onnx.ir.load import LoadedModel, load_model

WEIGHTS = random_weights(0, w=(4, 2, 3, 3, 3), b=(4,))


def conv_model() -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1] * 6)
    return make_model([node], [("x", [1, 2, 4, 4, 4])], [("y", None)], WEIGHTS)


def save_external(model: onnx.ModelProto, path: Path, location: str = "weights.bin") -> Path:
    """Save with every initializer in one external file (small threshold: all of them)."""
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return path


def relocate(path: Path, location: str, *, drop_length: bool = False) -> Path:
    """Rewrite the external-data location of every initializer of a saved model."""
    model = onnx.load_model(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        entries = [(e.key, e.value) for e in tensor.external_data]
        del tensor.external_data[:]
        for key, value in entries:
            if key == "length" and drop_length:
                continue
            entry = tensor.external_data.add()
            entry.key, entry.value = key, (location if key == "location" else value)
    onnx.save_model(model, str(path))
    return path


# --- What loads ---------------------------------------------------------------------------


def test_load_from_path_proto_and_loaded(tmp_path: Path) -> None:
    model = conv_model()
    path = tmp_path / "conv.onnx"
    onnx.save_model(model, str(path))
    from_path = load_model(path)
    assert from_path.path == path and from_path.name == "conv.onnx"
    assert not from_path.external_data
    from_string = load_model(str(path))
    assert from_string.proto == from_path.proto
    from_proto = load_model(model)
    assert from_proto.path is None and from_proto.name == "test"
    assert from_proto.proto == model and from_proto.proto is not model  # a copy
    assert load_model(from_proto) is from_proto


def test_opset_newer_than_the_runtime_is_refused() -> None:
    newest = runtime.max_opset()
    model = conv_model()
    model.opset_import[0].version = newest
    assert load_model(model).proto.opset_import[0].version == newest
    if newest >= onnx.defs.onnx_opset_version():
        pytest.skip("the installed onnx knows no opset newer than the runtime")
    model.opset_import[0].version = newest + 1
    with pytest.raises(UnsupportedModelError) as raised:
        load_model(model)
    assert str(raised.value) == (
        f"the model uses opset {newest + 1}; the installed onnxruntime supports opsets up "
        f"to {newest}"
    )


def test_local_functions_are_inlined() -> None:
    function = helper.make_function(
        "local",
        "DoubleRelu",
        ["a"],
        ["b"],
        [helper.make_node("Relu", ["a"], ["t"]), helper.make_node("Add", ["t", "t"], ["b"])],
        opset_imports=[helper.make_opsetid("", 17)],
    )
    graph = helper.make_graph(
        [helper.make_node("DoubleRelu", ["x"], ["y"], domain="local")],
        "functions",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph,
        functions=[function],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
    )
    loaded = load_model(model)
    assert not loaded.proto.functions
    assert [node.op_type for node in loaded.proto.graph.node] == ["Relu", "Add"]


# --- External data ------------------------------------------------------------------------


def test_external_data_round_trip(tmp_path: Path) -> None:
    path = save_external(conv_model(), tmp_path / "model.onnx")
    assert (tmp_path / "weights.bin").stat().st_size == (216 + 4) * 4
    loaded = load_model(path)
    assert loaded.external_data
    assert loaded.path == path
    for tensor in loaded.proto.graph.initializer:
        assert tensor.data_location == onnx.TensorProto.DEFAULT
        np.testing.assert_array_equal(numpy_helper.to_array(tensor), WEIGHTS[tensor.name])
    graph = analyse(loaded)
    assert graph.shape("y") == (1, 4, 4, 4, 4)


def test_external_data_in_a_subfolder_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = save_external(conv_model(), tmp_path / "model.onnx", location="data/weights.bin")
    assert load_model(path).external_data


@pytest.mark.parametrize(
    "location", ["../weights.bin", "data/../../weights.bin", "sub/../weights.bin"]
)
def test_external_data_with_dotdot_is_refused(tmp_path: Path, location: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    path = save_external(conv_model(), folder / "model.onnx")
    (folder / "weights.bin").rename(tmp_path / "weights.bin")
    relocate(path, location)
    with pytest.raises(ModelLoadError) as raised:
        load_model(path)
    assert str(raised.value) == (
        f"{path}: initializer 'w' refers to external data '{location}' outside the "
        "model's folder; refusing to read it"
    )


def test_external_data_with_an_absolute_location_is_refused(tmp_path: Path) -> None:
    path = save_external(conv_model(), tmp_path / "model.onnx")
    absolute = str((tmp_path / "weights.bin").resolve())
    relocate(path, absolute)
    with pytest.raises(ModelLoadError, match="outside the model's folder; refusing to read it"):
        load_model(path)


@pytest.mark.parametrize(
    "location", ["C:\\data\\weights.bin", "C:weights.bin", "\\\\host\\share\\w"]
)
def test_external_data_with_a_windows_absolute_location_is_refused(
    tmp_path: Path, location: str
) -> None:
    path = relocate(save_external(conv_model(), tmp_path / "model.onnx"), location)
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        load_model(path)


def test_external_data_through_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    path = save_external(conv_model(), folder / "model.onnx")
    (folder / "weights.bin").rename(tmp_path / "weights.bin")
    os.symlink(tmp_path / "weights.bin", folder / "weights.bin")
    with pytest.raises(ModelLoadError, match="resolves outside the model's folder"):
        load_model(path)


def test_missing_external_data_is_refused(tmp_path: Path) -> None:
    path = save_external(conv_model(), tmp_path / "model.onnx")
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelLoadError) as raised:
        load_model(path)
    assert str(raised.value) == (
        f"{path}: external data file 'weights.bin' for initializer 'w' is missing"
    )


def test_truncated_external_data_is_refused(tmp_path: Path) -> None:
    path = save_external(conv_model(), tmp_path / "model.onnx")
    data = tmp_path / "weights.bin"
    data.write_bytes(data.read_bytes()[:-4])
    with pytest.raises(ModelLoadError, match="shorter than initializer 'b' needs"):
        load_model(path)


def test_truncated_external_data_without_recorded_length_is_refused(tmp_path: Path) -> None:
    path = relocate(
        save_external(conv_model(), tmp_path / "model.onnx"), "weights.bin", drop_length=True
    )
    data = tmp_path / "weights.bin"
    data.write_bytes(data.read_bytes()[:-4])
    with pytest.raises(ModelLoadError) as raised:
        load_model(path)
    # Without a length, the first tensor reads to the end of the file (864 + 12 bytes).
    assert str(raised.value) == (
        f"{path}: initializer 'w' has 876 bytes of external data, its shape needs 864 "
        "(truncated data file?)"
    )


def test_in_memory_model_over_the_protobuf_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load, "PROTOBUF_LIMIT", 100)
    with pytest.raises(ModelLoadError, match="save it with external data and pass its path"):
        load_model(conv_model())


# --- Bad files ----------------------------------------------------------------------------


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "nothing.onnx")
    with pytest.raises(ModelLoadError, match="not a file"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, this is not an ONNX model\n", "not a readable ONNX model"),
        (b"", "not an ONNX model (no IR version, opset or graph)"),
        (bytes(range(256)) * 4, "not a readable ONNX model"),
    ],
)
def test_not_onnx_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        load_model(path)


def test_every_truncation_of_a_model_is_refused(tmp_path: Path) -> None:
    data = conv_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    for cut in range(0, len(data), 7):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError):
            load_model(path)


def test_invalid_graph_is_refused(tmp_path: Path) -> None:
    model = conv_model()
    model.graph.node[0].input[0] = "nowhere"
    path = tmp_path / "dangling.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ModelLoadError, match="invalid ONNX model"):
        load_model(path)


def test_unknown_op_domain_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], name="custom", domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    path = tmp_path / "custom.onnx"
    onnx.save_model(model, str(path))
    for source in (model, path):
        with pytest.raises(UnsupportedModelError) as raised:
            load_model(source)
        assert str(raised.value) == (
            "node 'custom' uses op 'Frobnicate' from domain 'com.example', which onnxruntime "
            "does not know"
        )


def test_loaded_model_is_frozen() -> None:
    loaded = load_model(conv_model())
    assert isinstance(loaded, LoadedModel)
    with pytest.raises(AttributeError):
        loaded.path = Path("elsewhere")  # type: ignore[misc]
