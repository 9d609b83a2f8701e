"""The oracle: the rewrite is exact, proven node by node, and the runtime runs it.

The pruned model must compute what the original computes with every removed channel
multiplied by zero where a layer consumes it (the *masked original*: a zero at the input
of each Conv, ConvTranspose, Gemm and MatMul that loses input channels). Removed channels
can only reach anything through such layers (channels that reach a graph output, or pass
through an op that mixes channels, are never removed).

:func:`validate` proves it in three steps, on the same random inputs:

1. ``onnx.checker.check_model`` with the full check;
2. node by node (:mod:`ranp_onnx.rewrite.layerwise`): every stored tensor of the original
   is exactly its kept channels in the pruned model, and every floating-point tensor of
   the pruned graph equals its counterpart in the masked original, restricted to the kept
   channels, to ``tolerance`` (default 1e-4) of that tensor's scale, each node run on the
   masked original's own inputs so that rounding never accumulates; the first tensor
   that differs is named;
3. the runtime: onnxruntime runs the written model, and its outputs agree with the masked
   original's to ``runtime_tolerance`` (default 1e-3: float32 rounding through the whole
   network in two implementations, not a proof, a check that the runtime computes what the
   graph says).

Where torch cannot evaluate an op of the model (an op without a rule; its channels are
kept whole), step 2 is skipped: onnxruntime runs the masked original too and only the
outputs are compared, which the result reports as not conclusive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import UnsupportedModelError, ValidationError, first_line
from ..ir import runtime
from ..ir.graph import GraphAnalysis, random_inputs
from ..ir.load import PROTOBUF_LIMIT
from ..ops import rule_for
from .layerwise import compare_layers

#: Default tolerance of the node-by-node proof: max |difference| / max |reference| per tensor.
DEFAULT_TOLERANCE = 1e-4
#: Default tolerance of the runtime check, per graph output (rounding accumulates there).
RUNTIME_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ValidationResult:
    """What the oracle found.

    Attributes:
        errors: The runtime check: relative max error of onnxruntime's output against the
            masked original's, per graph output.
        tolerance: The node-by-node tolerance applied.
        provider: The onnxruntime execution provider that ran the pruned model.
        tensors: Floating-point tensors compared node by node (0 where torch cannot
            evaluate the model).
        worst_tensor: The tensor with the largest relative error node by node, and it.
        degenerate: Compared tensors whose reference was all zero (no evidence either way).
        runtime_tolerance: The runtime check's tolerance.
        unchecked: Why the node-by-node proof did not run (None where it did).
    """

    errors: Mapping[str, float]
    tolerance: float
    provider: str
    tensors: int = 0
    worst_tensor: tuple[str, float] = ("", 0.0)
    degenerate: tuple[str, ...] = ()
    runtime_tolerance: float = RUNTIME_TOLERANCE
    unchecked: str | None = None

    @property
    def conclusive(self) -> bool:
        """True if the node-by-node proof ran.

        A tensor all zero in the masked original (a dead ReLU's) makes only its own node's
        check vacuous; ``degenerate`` lists them.
        """
        return self.unchecked is None and self.tensors > 0

    @property
    def worst(self) -> tuple[str, float]:
        """The worst tensor node by node (the worst output where that did not run)."""
        return self.worst_tensor if self.unchecked is None else worst_output(self.errors)

    def describe(self) -> str:
        """One line: what was compared, the worst error, and the runtime's."""
        output, runtime_error = worst_output(self.errors)
        ran = f"onnxruntime ({self.provider}): max error {runtime_error:.2e} of output scale"
        if self.unchecked is not None:
            return f"outputs only ({self.unchecked}); {ran} ({output})"
        name, error = self.worst_tensor
        return (
            f"{self.tensors} tensors node by node, max error {error:.2e} of a tensor's scale "
            f"('{name}'); {ran} ('{output}')"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        name, error = self.worst
        return {
            "max_relative_error": error,
            "worst_tensor": name,
            "tolerance": self.tolerance,
            "tensors_compared": self.tensors,
            "degenerate_tensors": list(self.degenerate),
            "runtime": {
                **error_summary(self.errors, self.runtime_tolerance),
                "provider": self.provider,
            },
            "conclusive": self.conclusive,
            "unchecked": self.unchecked,
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
        message = first_line(failure)
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
    runtime_tolerance: float = RUNTIME_TOLERANCE,
) -> ValidationResult:
    """Prove the rewrite node by node, then run it in onnxruntime (see the module).

    Args:
        graph: The analysed original model.
        pruned: The rewritten model.
        kept: Kept indices per space that lost elements.
        tolerance: Largest accepted max |difference| / max |reference| per tensor.
        inputs: Inputs to run on (default: standard-normal at the analysed shapes).
        device: onnxruntime device ("auto", "cpu" or "cuda") of the runtime check.
        runtime_tolerance: Largest accepted relative difference of onnxruntime's outputs.

    Raises:
        ValidationError: The checker refuses the model, a tensor differs by more than
            the tolerance or changed shape (the message names the first), or onnxruntime
            cannot run the model or disagrees.
    """
    _check(pruned)
    feeds = dict(inputs) if inputs is not None else random_inputs(graph, seed=0)
    providers = runtime.available_providers(device)
    reference = masked_original(graph, kept)
    try:
        layers = compare_layers(reference, pruned, kept, feeds, tolerance=tolerance)
        expected, unchecked = layers.outputs, None
    except UnsupportedModelError as why:
        layers, unchecked = None, first_line(why)
        expected = _run_reference(reference, providers, feeds)
    session, actual = _run_pruned(pruned, providers, feeds)
    errors = {}
    for name, got in zip([output.name for output in pruned.graph.output], actual):
        want = expected[name]
        if want.shape != got.shape:
            raise ValidationError(
                f"validation failed: output '{name}' has shape {list(got.shape)} after pruning, "
                f"{list(want.shape)} before; no model was written"
            )
        errors[name] = relative_difference(want, got)
    result = ValidationResult(
        errors=errors,
        tolerance=tolerance,
        provider=session.get_providers()[0],
        tensors=layers.tensors if layers else 0,
        worst_tensor=layers.worst if layers else ("", 0.0),
        degenerate=layers.degenerate if layers else (),
        runtime_tolerance=tolerance if unchecked else runtime_tolerance,
        unchecked=unchecked,
    )
    name, error = worst_output(errors)
    if not error <= result.runtime_tolerance:
        raise ValidationError(
            f"validation failed: output '{name}' of the pruned model in onnxruntime differs "
            f"from the masked original by {error:.3g} of its scale (tolerance "
            f"{result.runtime_tolerance:g}); no model was written"
        )
    return result


def _run_reference(
    reference: onnx.ModelProto,
    providers: list[runtime.Provider],
    feeds: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The masked original's outputs in onnxruntime (where torch cannot evaluate it)."""
    session = runtime.make_session(reference, providers=providers, options=_oracle_options())
    names = [output.name for output in reference.graph.output]
    return dict(zip(names, session.run(None, dict(feeds))))
