"""The installed onnxruntime: what it accepts, and sessions on it.

onnxruntime is imported lazily so that the package imports without it; the limits it
accepts (IR version, default-domain opset) are probed once on tiny models rather than read
from a table, so a newer or older runtime is handled as it is.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import onnx
from onnx import helper

from ..errors import UnsupportedModelError, first_line

if TYPE_CHECKING:
    import onnxruntime

#: Operator domains onnxruntime implements besides the ONNX standard ones.
RUNTIME_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc"})


def import_onnxruntime() -> Any:
    """Import onnxruntime or explain how to install it."""
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise UnsupportedModelError(
            "onnxruntime is not installed: pip install 'ranp-onnx[cpu]' (or '[gpu]')"
        ) from error
    return onnxruntime


def _accepts(ir_version: int, opset: int) -> bool:
    ort = import_onnxruntime()
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:
        return False
    return True


@functools.cache
def max_ir_version() -> int:
    """Return the highest model IR version the installed onnxruntime loads."""
    for ir_version in range(onnx.IR_VERSION + 2, 2, -1):
        if _accepts(ir_version, 11):
            return ir_version
    raise UnsupportedModelError("the installed onnxruntime loads no IR version (probe failed)")


@functools.cache
def max_opset() -> int:
    """Return the highest default-domain opset the installed onnxruntime loads."""
    ir_version = max_ir_version()
    for opset in range(onnx.defs.onnx_opset_version() + 2, 6, -1):
        if _accepts(ir_version, opset):
            return opset
    raise UnsupportedModelError("the installed onnxruntime loads no opset (probe failed)")


def runtime_ir_version(model: onnx.ModelProto) -> int:
    """Return the IR version to write so that onnxruntime loads ``model``.

    The model's own IR version if the runtime accepts it, else the runtime's maximum (IR
    versions only add features; a model that needs a newer one fails the checker later).
    """
    return min(model.ir_version, max_ir_version())


def default_opset(model: onnx.ModelProto) -> int:
    """Return the model's default-domain opset version."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


#: An execution provider, by name or as (name, provider options).
Provider = str | tuple[str, dict[str, str]]

#: CUDA with TF32 off: TF32 convolutions round to 10 mantissa bits, which is far more
#: than the validation's 1e-4 tolerance.
CUDA_PROVIDER: Provider = ("CUDAExecutionProvider", {"use_tf32": "0"})


def available_providers(device: str = "auto") -> list[Provider]:
    """Return execution providers for ``device`` ("auto", "cpu" or "cuda"), best first."""
    ort = import_onnxruntime()
    installed = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in installed:
        return [CUDA_PROVIDER, "CPUExecutionProvider"]
    if device == "cuda":
        raise UnsupportedModelError(
            "`device` cuda: onnxruntime has no CUDAExecutionProvider here "
            f"(installed: {', '.join(installed)})"
        )
    return ["CPUExecutionProvider"]


def make_session(
    model: onnx.ModelProto | str | os.PathLike[str],
    *,
    providers: Sequence[Provider] = ("CPUExecutionProvider",),
    options: onnxruntime.SessionOptions | None = None,
) -> onnxruntime.InferenceSession:
    """Create an inference session for an in-memory model or a model file.

    The IR version of an in-memory model is lowered to what the runtime accepts without
    touching the caller's proto. Models over 2 GB must be saved with external data and
    opened from their path (the file's IR version must be one the runtime reads).
    """
    ort = import_onnxruntime()
    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
    if not isinstance(model, onnx.ModelProto):
        return _open_session(ort, str(model), options, providers)
    if model.ir_version > max_ir_version():
        lowered = onnx.ModelProto()
        lowered.CopyFrom(model)
        lowered.ir_version = max_ir_version()
        model = lowered
    return _open_session(ort, model.SerializeToString(), options, providers)


def _open_session(
    ort: Any, source: str | bytes, options: Any, providers: Sequence[Provider]
) -> onnxruntime.InferenceSession:
    try:
        return ort.InferenceSession(source, options, providers=list(providers))
    except Exception as error:
        if any(isinstance(p, tuple) for p in providers):
            # An older runtime without one of the provider options: plain names.
            names = [p[0] if isinstance(p, tuple) else p for p in providers]
            return _open_session(ort, source, options, names)
        message = first_line(error)
        raise UnsupportedModelError(f"onnxruntime cannot load the model: {message}") from error
