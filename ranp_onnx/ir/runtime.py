"""The installed onnxruntime and onnx: what they accept, and sessions on the runtime.

onnxruntime is imported lazily so that the package imports without it; the limits it
accepts (IR version, default-domain opset) are probed once on tiny models rather than read
from a table, so a newer or older runtime is handled as it is. The runtime's IR version
may be above, equal to or below the onnx checker's: a model is checked from a copy at the
checker's (:func:`check_model`) and run from a copy at the runtime's (:func:`make_session`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
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


#: How far above the installed onnx's IR version and opset the runtime's are looked for.
PROBE_SPAN = 16


def _highest(accepts: Callable[[int], bool], lowest: int, start: int) -> int | None:
    """Return the highest value ``accepts``, searching down from ``start`` then up.

    The accepted values run without a gap from ``lowest`` up, and the highest may lie above
    ``start`` (a runtime newer than the installed onnx): at most :data:`PROBE_SPAN` above.
    """
    value = start
    while value >= lowest and not accepts(value):
        value -= 1
    if value < lowest:
        return None
    while value < start + PROBE_SPAN and accepts(value + 1):
        value += 1
    return value


@functools.cache
def max_ir_version() -> int:
    """Return the highest model IR version the installed onnxruntime loads.

    It may be above, equal to or below :func:`checker_ir_version`: onnx and onnxruntime
    are released apart.
    """
    found = _highest(lambda ir_version: _accepts(ir_version, 11), 3, checker_ir_version())
    if found is None:
        raise UnsupportedModelError("the installed onnxruntime loads no IR version (probe failed)")
    return found


@functools.cache
def max_opset() -> int:
    """Return the highest default-domain opset the installed onnxruntime loads."""
    ir_version = max_ir_version()
    found = _highest(lambda opset: _accepts(ir_version, opset), 7, onnx.defs.onnx_opset_version())
    if found is None:
        raise UnsupportedModelError("the installed onnxruntime loads no opset (probe failed)")
    return found


def checker_ir_version() -> int:
    """Return the highest IR version the installed onnx checker accepts."""
    return int(onnx.IR_VERSION)


def readable_ir_version() -> int:
    """Return the highest IR version a model may have to be loaded.

    A model the runtime reads is checked from a copy at the checker's IR version; one the
    checker reads is run from a copy at the runtime's (IR versions only add features: a
    model that needs the newer one fails the check or the session).
    """
    return max(checker_ir_version(), max_ir_version())


def at_ir_version(model: onnx.ModelProto, ir_version: int) -> onnx.ModelProto:
    """Return ``model`` if its IR version is at most ``ir_version``, else a copy at it.

    The caller's proto is never modified.
    """
    if model.ir_version <= ir_version:
        return model
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    lowered.ir_version = ir_version
    return lowered


def check_model(model: onnx.ModelProto, *, full_check: bool = False) -> None:
    """Run ``onnx.checker.check_model`` on the model, at an IR version the checker knows.

    Raises:
        onnx.checker.ValidationError: The model is not valid ONNX.
        onnx.shape_inference.InferenceError: With ``full_check``: shape inference fails.
    """
    onnx.checker.check_model(at_ir_version(model, checker_ir_version()), full_check=full_check)


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
    lowered = at_ir_version(model, max_ir_version())
    return _open_session(ort, lowered.SerializeToString(), options, providers)


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
