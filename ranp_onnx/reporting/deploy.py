"""Deployment check: a (pruned) model loads and runs in a runtime and agrees with onnxruntime.

:func:`check_deployment` runs the model file in the chosen runtime (onnxruntime, or
OpenVINO where installed: the optional extra ``openvino``) on random inputs at the analysed
shapes, compares its outputs with onnxruntime's on the same inputs, and, given the original
model and the plan that pruned it, also runs the oracle of :mod:`ranp_onnx.rewrite.oracle` (the
pruned model equals the original with the removed channels masked). OpenVINO is imported
lazily, so the package works without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.channels import analyse_channels
from ..errors import UnsupportedModelError, ValidationError, first_line
from ..ir import runtime
from ..ir.graph import GraphAnalysis, random_inputs
from ..rewrite.oracle import (
    DEFAULT_TOLERANCE,
    ValidationResult,
    error_summary,
    relative_difference,
    validate,
    worst_output,
)
from ..selection.plan import PrunePlan, keep_from_plan

RUNTIMES = ("onnxruntime", "openvino")


def import_openvino() -> Any:
    """Import OpenVINO or explain how to install it.

    Raises:
        UnsupportedModelError: OpenVINO is not installed.
    """
    try:
        import openvino
    except ImportError as error:
        raise UnsupportedModelError(
            "`runtime_name` openvino: OpenVINO is not installed (pip install 'ranp-onnx[openvino]')"
        ) from error
    return openvino


@dataclass(frozen=True)
class DeploymentCheck:
    """What :func:`check_deployment` found.

    Attributes:
        model: The model file checked.
        runtime: "onnxruntime" or "openvino".
        version: The runtime's version.
        errors: Per output, max |runtime - onnxruntime| / max |onnxruntime| (all 0 when the
            runtime is onnxruntime itself).
        tolerance: The tolerance applied.
        input_shapes: The shapes the model ran at.
        oracle: The masked-original check, if a reference and a plan were given.
    """

    model: str
    runtime: str
    version: str
    errors: Mapping[str, float]
    tolerance: float
    input_shapes: Mapping[str, tuple[int, ...]]
    oracle: ValidationResult | None = None

    @property
    def worst(self) -> tuple[str, float]:
        """The output that differs most from onnxruntime, and by how much."""
        return worst_output(self.errors)

    def to_json(self) -> dict[str, Any]:
        """The ``validate --json`` document."""
        return {
            "model": self.model,
            "runtime": self.runtime,
            "version": self.version,
            "input_shapes": {key: list(shape) for key, shape in self.input_shapes.items()},
            **error_summary(self.errors, self.tolerance),
            "oracle": self.oracle.to_json() if self.oracle is not None else None,
            "passed": True,
        }


def run_onnxruntime(path: str | os.PathLike[str], feeds: Mapping[str, np.ndarray]) -> list[Any]:
    """Run a model file in onnxruntime on the CPU; its outputs in graph order.

    Raises:
        ValidationError: onnxruntime cannot load or run the model.
    """
    try:
        session = runtime.make_session(path)
        return list(session.run(None, dict(feeds)))
    except UnsupportedModelError as error:
        raise ValidationError(f"deployment check failed: {error}") from error
    except Exception as error:  # onnxruntime raises its own exception types
        raise ValidationError(
            f"deployment check failed: onnxruntime: {first_line(error)}"
        ) from error


def run_openvino(
    path: str | os.PathLike[str], feeds: Mapping[str, np.ndarray], outputs: list[str]
) -> list[np.ndarray]:
    """Read, compile (CPU, float32 inference) and run a model file in OpenVINO.

    Args:
        path: The ONNX file (external data beside it is read too).
        feeds: Inputs by name.
        outputs: The graph's output names, in order.

    Raises:
        UnsupportedModelError: OpenVINO is not installed.
        ValidationError: OpenVINO cannot read, compile or run the model.
    """
    openvino = import_openvino()
    try:
        core = openvino.Core()
        compiled = core.compile_model(
            core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        result = compiled(dict(feeds))
        by_name = {
            name: np.asarray(result[port]) for port in compiled.outputs for name in port.get_names()
        }
    except Exception as error:  # OpenVINO raises RuntimeError and its own types
        raise ValidationError(f"deployment check failed: OpenVINO: {first_line(error)}") from error
    missing = [name for name in outputs if name not in by_name]
    if missing:
        raise ValidationError(f"deployment check failed: OpenVINO gives no output '{missing[0]}'")
    return [by_name[name] for name in outputs]


def runtime_version(name: str) -> str:
    """The installed version of a runtime ("onnxruntime" or "openvino")."""
    module = runtime.import_onnxruntime() if name == "onnxruntime" else import_openvino()
    # OpenVINO's version carries its build: "2026.4.1-22982-e213a147257-releases/2026/4".
    return str(getattr(module, "__version__", "?")).split("-")[0]


def check_deployment(
    graph: GraphAnalysis,
    path: str | os.PathLike[str],
    *,
    runtime_name: str = "onnxruntime",
    tolerance: float = DEFAULT_TOLERANCE,
    reference: GraphAnalysis | None = None,
    plan: PrunePlan | None = None,
) -> DeploymentCheck:
    """Run a model file in a runtime and compare it with onnxruntime (and the oracle).

    Args:
        graph: The model, analysed (its input shapes are the ones run).
        path: Its file, which the runtime reads.
        runtime_name: "onnxruntime" or "openvino".
        tolerance: Largest accepted max |difference| / max |expected| per output.
        reference: The original model, analysed at the same input shapes, for the oracle.
        plan: The plan that pruned ``reference`` into ``graph``.

    Raises:
        ValidationError: The runtime cannot load or run the model, or an output differs
            by more than the tolerance, or the oracle fails.
        UnsupportedModelError: The runtime is not installed or unknown.
        PlanError: The plan does not fit the reference.
    """
    if runtime_name not in RUNTIMES:
        raise UnsupportedModelError(f"unknown runtime '{runtime_name}' ({', '.join(RUNTIMES)})")
    version = runtime_version(runtime_name)
    feeds = random_inputs(graph, seed=0)
    expected = run_onnxruntime(path, feeds)
    names = list(graph.output_names)
    errors = dict.fromkeys(names, 0.0)
    if runtime_name == "openvino":
        errors = _compare_openvino(path, feeds, names, expected, tolerance)
    oracle = None
    if reference is not None and plan is not None:
        oracle = _oracle(graph, reference, plan, tolerance)
    return DeploymentCheck(
        model=Path(path).name,
        runtime=runtime_name,
        version=version,
        errors=errors,
        tolerance=tolerance,
        input_shapes=dict(graph.input_shapes),
        oracle=oracle,
    )


def _compare_openvino(
    path: str | os.PathLike[str],
    feeds: Mapping[str, np.ndarray],
    names: list[str],
    expected: list[Any],
    tolerance: float,
) -> dict[str, float]:
    """OpenVINO's outputs against onnxruntime's: the relative error of each."""
    errors = {}
    for name, want, got in zip(names, expected, run_openvino(path, feeds, names)):
        if tuple(want.shape) != tuple(got.shape):
            raise ValidationError(
                f"deployment check failed: output '{name}' has shape {list(got.shape)} in "
                f"OpenVINO, {list(want.shape)} in onnxruntime"
            )
        errors[name] = relative_difference(want, got)
    worst, error = worst_output(errors)
    if not error <= tolerance:
        raise ValidationError(
            f"deployment check failed: output '{worst}' differs between OpenVINO and "
            f"onnxruntime by {error:.3g} of its scale (tolerance {tolerance:g})"
        )
    return errors


def _oracle(
    graph: GraphAnalysis, reference: GraphAnalysis, plan: PrunePlan, tolerance: float
) -> ValidationResult:
    """The pruned model against the reference with the plan's removed channels masked."""
    channels = analyse_channels(reference)
    kept = channels.kept_indices(keep_from_plan(channels, plan))
    try:
        return validate(reference, graph.model.proto, kept, tolerance=tolerance, device="cpu")
    except ValidationError as failure:
        text = str(failure).removesuffix("; no model was written")
        raise ValidationError(f"the masked-original oracle: {text}") from failure
