"""Stage 6, validate: the rewrite is exact, proven in onnxruntime.

The oracle: the original model, with every removed channel multiplied by zero where a
layer consumes it (the input of each Conv, ConvTranspose, Gemm and MatMul that loses input
channels), must give the same outputs as the pruned model on the same inputs. Removed
channels can only reach the outputs through such layers (channels that reach a graph
output, or pass through an op that mixes channels, are never removed), so agreement up to
float rounding means the rewrite removed exactly what the plan says and nothing else.
Before the oracle runs, the pruned model must pass ``onnx.checker.check_model`` with the
full check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import runtime
from .analyse import GraphAnalysis
from .errors import ValidationError
from .load import PROTOBUF_LIMIT
from .measure import random_inputs
from .ops import rule_for

#: Default tolerance: max |original - pruned| relative to max |original| per output.
DEFAULT_TOLERANCE = 1e-4
#: Below this relative change of the outputs between two random inputs, the outputs do not
#: depend on the inputs (activations vanish) and agreement proves little.
INPUT_SENSITIVITY_FLOOR = 1e-3


@dataclass(frozen=True)
class ValidationResult:
    """How closely the pruned model reproduced the masked original.

    Attributes:
        errors: Relative max error per graph output.
        tolerance: The tolerance applied.
        provider: The onnxruntime execution provider used.
        input_sensitivity: How much the original's outputs change between two random
            inputs, relative to their scale (the largest over outputs); None if the inputs
            were given. Near 0 the outputs ignore the inputs (e.g. activations that vanish
            in inference mode at initialization) and the agreement proves little.
    """

    errors: Mapping[str, float]
    tolerance: float
    provider: str
    input_sensitivity: float | None = None

    @property
    def conclusive(self) -> bool:
        """False if the outputs hardly depend on the inputs, so agreement proves little."""
        return self.input_sensitivity is None or (self.input_sensitivity >= INPUT_SENSITIVITY_FLOOR)

    @property
    def worst(self) -> tuple[str, float]:
        """The output with the largest relative error, and that error."""
        return worst_output(self.errors)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            **error_summary(self.errors, self.tolerance),
            "provider": self.provider,
            "input_sensitivity": self.input_sensitivity,
            "conclusive": self.conclusive,
        }


def worst_output(errors: Mapping[str, float]) -> tuple[str, float]:
    """The output with the largest error, and that error."""
    name = max(errors, key=lambda key: errors[key])
    return name, errors[name]


def error_summary(errors: Mapping[str, float], tolerance: float) -> dict[str, Any]:
    """The JSON fields of a comparison: every output's error, the worst, the tolerance."""
    name, error = worst_output(errors)
    return {
        "max_relative_error": error,
        "worst_output": name,
        "tolerance": tolerance,
        "errors": dict(errors),
    }


def masked_original(
    graph: GraphAnalysis, kept: Mapping[tuple[str, int], np.ndarray]
) -> onnx.ModelProto:
    """Return a copy of the original model with removed channels zeroed where consumed."""
    model = onnx.ModelProto()
    model.CopyFrom(graph.model.proto)
    masks: dict[tuple[str, int], str] = {}
    new_nodes: list[onnx.NodeProto] = []
    for node, proto in zip(graph.nodes, model.graph.node):
        rule = rule_for(node.op_type, node.domain)
        for slot, axis in rule.masked_inputs if rule is not None else ():
            name = node.inputs[slot]
            rank = len(graph.shape(name))
            key = (name, axis % rank)
            if key not in kept:
                continue
            if key not in masks:
                masks[key] = _add_mask(model, graph, name, key[1], rank, kept[key], new_nodes)
            proto.input[slot] = masks[key]
        new_nodes.append(proto)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return model


def _add_mask(
    model: onnx.ModelProto,
    graph: GraphAnalysis,
    name: str,
    axis: int,
    rank: int,
    kept: np.ndarray,
    nodes: list[onnx.NodeProto],
) -> str:
    size = graph.shape(name)[axis]
    dtype = helper.tensor_dtype_to_np_dtype(graph.tensors[name].elem_type)
    mask = np.zeros(size, dtype=dtype)
    mask[kept] = 1
    shape = [1] * rank
    shape[axis] = size
    mask_name = f"{name}__ranp_mask"
    model.graph.initializer.append(numpy_helper.from_array(mask.reshape(shape), mask_name))
    nodes.append(
        helper.make_node(
            "Mul", [name, mask_name], [f"{name}__ranp_masked"], name=f"{name}__ranp_mask_mul"
        )
    )
    return f"{name}__ranp_masked"


def _check(pruned: onnx.ModelProto) -> None:
    """The ONNX checker with the full check (shape inference included), under 2 GB."""
    if pruned.ByteSize() >= PROTOBUF_LIMIT:
        return
    try:
        runtime.check_model(pruned, full_check=True)
    except Exception as error:  # ValidationError, InferenceError: both fail the proof
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        raise ValidationError(
            f"validation failed: the pruned model fails the ONNX checker "
            f"({lines[-1] if lines else type(error).__name__}); no model was written"
        ) from error


def _run_pruned(
    pruned: onnx.ModelProto, providers: list[runtime.Provider], feeds: Mapping[str, np.ndarray]
) -> tuple[Any, list[np.ndarray]]:
    """Open and run the pruned model; any onnxruntime failure fails the validation."""
    try:
        session = runtime.make_session(pruned, providers=providers, options=_oracle_options())
        return session, session.run(None, dict(feeds))
    except Exception as failure:  # onnxruntime raises its own exception types
        text = str(failure).strip()
        message = text.splitlines()[0] if text else type(failure).__name__
        raise ValidationError(
            f"validation failed: onnxruntime cannot run the pruned model ({message}); "
            "no model was written"
        ) from failure


def _oracle_options() -> Any:
    """Session options of the oracle: no CPU memory arena.

    Each model runs once or twice; an arena would keep its peak (rounded up to the next
    power of two) for the session's lifetime. Without it the validation of the full
    ShapeNet 3D-UNet at 48^3 peaks 270 MB lower and runs as fast (benchmarks/RESULTS.md).
    """
    options = runtime.import_onnxruntime().SessionOptions()
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False
    return options


def relative_difference(want: np.ndarray, got: np.ndarray) -> float:
    """Return max |want - got| / max |want| (the difference itself where want is all 0)."""
    if not want.size:
        return 0.0
    scale = float(np.max(np.abs(want)))
    difference = float(np.max(np.abs(want.astype(np.float64) - got)))
    return difference / scale if scale > 0 else difference


def validate(
    graph: GraphAnalysis,
    pruned: onnx.ModelProto,
    kept: Mapping[tuple[str, int], np.ndarray],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    inputs: Mapping[str, np.ndarray] | None = None,
    device: str = "auto",
) -> ValidationResult:
    """Run the masked original and the pruned model on the same inputs and compare.

    Args:
        graph: The analysed original model.
        pruned: The rewritten model.
        kept: Kept indices per space that lost elements.
        tolerance: Largest accepted max |difference| / max |original| per output.
        inputs: Inputs to run on (default: standard-normal at the analysed shapes).
        device: onnxruntime device ("auto", "cpu" or "cuda").

    Raises:
        ValidationError: An output differs by more than the tolerance, or changed shape;
            the message names the worst output.
    """
    _check(pruned)
    feeds = dict(inputs) if inputs is not None else random_inputs(graph, seed=0)
    providers = runtime.available_providers(device)
    reference_session = runtime.make_session(
        masked_original(graph, kept), providers=providers, options=_oracle_options()
    )
    expected = reference_session.run(None, feeds)
    moved = reference_session.run(None, random_inputs(graph, seed=1)) if inputs is None else None
    # One session at a time: the full model's arena is gone before the pruned one's starts.
    del reference_session
    pruned_session, actual = _run_pruned(pruned, providers, feeds)
    names = [output.name for output in pruned.graph.output]
    errors = {}
    for name, want, got in zip(names, expected, actual):
        if want.shape != got.shape:
            raise ValidationError(
                f"validation failed: output '{name}' has shape {list(got.shape)} after pruning, "
                f"{list(want.shape)} before"
            )
        errors[name] = relative_difference(want, got)
    sensitivity = None
    if moved is not None:
        sensitivity = max((relative_difference(a, b) for a, b in zip(expected, moved)), default=0.0)
    result = ValidationResult(
        errors=errors,
        tolerance=tolerance,
        provider=pruned_session.get_providers()[0],
        input_sensitivity=sensitivity,
    )
    worst, error = result.worst
    if not error <= tolerance:
        raise ValidationError(
            f"validation failed: output '{worst}' differs from the masked original by "
            f"{error:.3g} of its scale (tolerance {tolerance:g}); no model was written"
        )
    return result
