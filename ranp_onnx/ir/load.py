"""Stage 1, load: read an ONNX model safely, external data included.

``load_model`` is the only way the rest of the package gets a model. It refuses files that
are not ONNX, truncated protobufs, external data that is missing or escapes the model's
folder, IR versions newer than both the installed onnx and onnxruntime read, operator
domains the runtime does not know and opsets newer than the runtime. A model whose IR
version is above the onnx checker's is checked from a copy lowered to the checker's; the
model itself keeps its IR version.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import onnx
import onnx.inliner
from onnx import external_data_helper

from ..errors import ModelLoadError, UnsupportedModelError, first_line
from . import runtime

#: Protobuf cannot serialise a message over 2 GB.
PROTOBUF_LIMIT = (1 << 31) - 1

#: Element types packed several to a byte: their raw data size is not numel x itemsize.
_SUB_BYTE_TYPES = frozenset(
    getattr(onnx.TensorProto, name)
    for name in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
    if hasattr(onnx.TensorProto, name)
)


@dataclass(frozen=True)
class LoadedModel:
    """A model read into memory.

    Attributes:
        proto: The model, external data loaded, local functions inlined.
        path: Where it was read from, or None for an in-memory model.
        external_data: True if its initializers were stored in external files; the
            rewriter keeps such models external when it writes them.
    """

    proto: onnx.ModelProto
    path: Path | None
    external_data: bool

    @property
    def name(self) -> str:
        """A short name for reports: the file name, or the graph name."""
        return self.path.name if self.path is not None else (self.proto.graph.name or "model")


def load_model(source: str | os.PathLike[str] | onnx.ModelProto | LoadedModel) -> LoadedModel:
    """Read and check an ONNX model.

    Args:
        source: A path to a ``.onnx`` file, a ModelProto, or an already loaded model
            (returned as is). A ModelProto is copied, never modified.

    Returns:
        The loaded model.

    Raises:
        ModelLoadError: The file is missing, not ONNX, truncated or has unsafe or missing
            external data.
        UnsupportedModelError: The model's IR version is newer than both the installed
            onnx and onnxruntime read, or it uses an operator domain or opset that the
            installed onnxruntime does not know.
    """
    if isinstance(source, LoadedModel):
        return source
    if isinstance(source, onnx.ModelProto):
        if source.ByteSize() > PROTOBUF_LIMIT:
            raise ModelLoadError(
                f"{source.graph.name or 'model'}: an in-memory model over 2 GB cannot be "
                "checked or run; save it with external data and pass its path"
            )
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        path = None
        external = False
        _check_structure(proto, None)
    else:
        path = Path(source)
        proto, external = _read_file(path)
    _check_runtime_support(proto)
    if proto.functions:
        proto = onnx.inliner.inline_local_functions(proto)
    return LoadedModel(proto=proto, path=path, external_data=external)


def _read_file(path: Path) -> tuple[onnx.ModelProto, bool]:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a file")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as error:
        raise ModelLoadError(
            f"{path}: not a readable ONNX model (truncated or not a protobuf: {first_line(error)})"
        ) from error
    external_tensors = [t for t in _all_tensors(proto.graph) if _is_external(t)]
    for tensor in external_tensors:
        _check_external_location(path, tensor)
    _check_structure(proto, path)
    if external_tensors:
        try:
            external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except Exception as error:
            raise ModelLoadError(
                f"{path}: cannot read external data ({first_line(error)})"
            ) from error
        for tensor in external_tensors:  # the same objects, now holding their data
            _check_data_size(path, tensor)
    return proto, bool(external_tensors)


def _check_data_size(model_path: Path, tensor: onnx.TensorProto) -> None:
    """Refuse raw data shorter or longer than the tensor's shape needs (a truncated file)."""
    if not tensor.HasField("raw_data"):
        return
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return
    if tensor.data_type in _SUB_BYTE_TYPES or tensor.data_type == onnx.TensorProto.STRING:
        return
    expected = itemsize * _numel(tensor.dims)
    if len(tensor.raw_data) != expected:
        raise ModelLoadError(
            f"{model_path}: initializer '{tensor.name}' has {len(tensor.raw_data)} bytes of "
            f"external data, its shape needs {expected} (truncated data file?)"
        )


def _check_structure(proto: onnx.ModelProto, path: Path | None) -> None:
    """Run the onnx checker on the model (on its file, which holds no data, if it has one)."""
    where = str(path) if path is not None else (proto.graph.name or "model")
    if proto.ir_version <= 0 or not proto.opset_import or not proto.graph.node:
        raise ModelLoadError(f"{where}: not an ONNX model (no IR version, opset or graph)")
    if proto.ir_version > runtime.readable_ir_version():
        raise UnsupportedModelError(
            f"{where}: the model has IR version {proto.ir_version}; the installed onnxruntime "
            f"reads IR versions up to {runtime.max_ir_version()} and onnx up to "
            f"{runtime.checker_ir_version()}"
        )
    lowered = runtime.at_ir_version(proto, runtime.checker_ir_version())
    with contextlib.ExitStack() as stack:
        if path is None:
            checkable: onnx.ModelProto | str = lowered
        elif lowered is proto:
            checkable = str(path)
        else:
            checkable = stack.enter_context(_lowered_file(lowered, path))
        try:
            onnx.checker.check_model(checkable)
        except Exception as error:
            raise ModelLoadError(f"{where}: invalid ONNX model: {first_line(error)}") from error


@contextlib.contextmanager
def _lowered_file(lowered: onnx.ModelProto, path: Path) -> Iterator[str]:
    """Yield a file of ``lowered`` (``path``'s model at a lower IR version), for the checker.

    It is written into a temporary folder, the user's files untouched. The checker opens
    no external data file, it only checks that each is a regular file inside the model's
    folder, so empty stand-ins take their places there (the real files are checked by
    :func:`_check_external_location` and, once read, :func:`_check_data_size`).
    """
    with tempfile.TemporaryDirectory(prefix="ranp-check-") as folder:
        for tensor in _all_tensors(lowered.graph):
            if _is_external(tensor):
                stand_in = Path(folder, _external_info(tensor)["location"])
                stand_in.parent.mkdir(parents=True, exist_ok=True)
                stand_in.touch()
        copy = Path(folder, path.name)
        copy.write_bytes(lowered.SerializeToString())
        yield str(copy)


def _check_external_location(model_path: Path, tensor: onnx.TensorProto) -> None:
    info = _external_info(tensor)
    location = info.get("location", "")
    pure = Path(location)
    windows = PureWindowsPath(location)
    if (
        not location
        or pure.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or ".." in pure.parts
        or ".." in windows.parts
        or location.startswith(("/", "\\"))
    ):
        raise ModelLoadError(
            f"{model_path}: initializer '{tensor.name}' refers to external data "
            f"'{location}' outside the model's folder; refusing to read it"
        )
    folder = model_path.parent.resolve()
    target = (folder / pure).resolve()
    if folder not in target.parents:
        raise ModelLoadError(
            f"{model_path}: initializer '{tensor.name}' external data '{location}' resolves "
            "outside the model's folder; refusing to read it"
        )
    if not target.is_file():
        raise ModelLoadError(
            f"{model_path}: external data file '{location}' for initializer '{tensor.name}' "
            "is missing"
        )
    offset = int(info.get("offset", "0") or 0)
    length = info.get("length")
    if length is not None and offset + int(length) > target.stat().st_size:
        raise ModelLoadError(
            f"{model_path}: external data file '{location}' is shorter than initializer "
            f"'{tensor.name}' needs (truncated?)"
        )


def _check_runtime_support(proto: onnx.ModelProto) -> None:
    local_domains = {function.domain for function in proto.functions}
    for node in proto.graph.node:
        if node.domain not in runtime.RUNTIME_DOMAINS and node.domain not in local_domains:
            raise UnsupportedModelError(
                f"node '{node.name or node.op_type}' uses op '{node.op_type}' from domain "
                f"'{node.domain}', which onnxruntime does not know"
            )
    opset = runtime.default_opset(proto)
    if opset > runtime.max_opset():
        raise UnsupportedModelError(
            f"the model uses opset {opset}; the installed onnxruntime supports opsets up to "
            f"{runtime.max_opset()}"
        )


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                yield attribute.t
            elif attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _all_tensors(subgraph)


def _is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL


def _external_info(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def _numel(dims: Iterable[int]) -> int:
    count = 1
    for dim in dims:
        count *= int(dim)
    return count
