"""ranp-onnx: Resource Aware Neuron Pruning (RANP) at initialization for 3D CNNs, on ONNX.

The package is its pipeline, one subpackage per stage, each importing only the ones
below it (``make lint`` checks the layers):

``ir`` (graph types, load, save, runtime) -> ``ops`` (the op rules) -> ``analysis``
(shapes, channel groups, costs) -> ``scoring`` (gradient statistics) -> ``selection``
(criteria, constraints, searches, plans) -> ``rewrite`` (graph surgery, the oracle) ->
``reporting`` -> :mod:`~ranp_onnx.pipeline` (the wiring: ``prune``, ``apply_plan``) ->
``torch_api`` (``to_torch``, ``prune_module``) -> ``zoo`` and ``regularization`` (training
with per-group coefficients) -> ``cli``.

The torch side is imported on first use, so ``import ranp_onnx`` does not import torch:
:func:`to_torch` / :func:`to_onnx` (:mod:`~ranp_onnx.torch_api.round_trip`) and
:func:`prune_module` (:mod:`~ranp_onnx.torch_api.prune_module`); :func:`regularize`,
:func:`regularize_module` and :class:`Regularizer` (:mod:`ranp_onnx.regularization`,
Zhang et al.'s regularization-based pruning of trained networks).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .analysis.costs import CostReport, count_costs
from .analysis.shapes import analyse, parse_input_shapes
from .errors import RanpError
from .ir.graph import GraphAnalysis
from .ir.load import LoadedModel, load_model
from .pipeline import PruneOptions, PruneResult, apply_plan, prune

if TYPE_CHECKING:
    from .regularization.options import RegularizeOptions
    from .regularization.pipeline import regularize, regularize_module
    from .regularization.regularizer import Regularizer
    from .torch_api.prune_module import PrunedModule, prune_module
    from .torch_api.round_trip import to_onnx, to_torch

#: Public names imported on first access (they import torch), and their modules.
_LAZY = {
    "PrunedModule": "torch_api.prune_module",
    "prune_module": "torch_api.prune_module",
    "RegularizeOptions": "regularization.options",
    "Regularizer": "regularization.regularizer",
    "regularize": "regularization.pipeline",
    "regularize_module": "regularization.pipeline",
    "to_onnx": "torch_api.round_trip",
    "to_torch": "torch_api.round_trip",
}

__all__ = [
    "CostReport",
    "GraphAnalysis",
    "LoadedModel",
    "PruneOptions",
    "PruneResult",
    "PrunedModule",
    "RanpError",
    "RegularizeOptions",
    "Regularizer",
    "analyse",
    "apply_plan",
    "count_costs",
    "load_model",
    "parse_input_shapes",
    "prune",
    "prune_module",
    "regularize",
    "regularize_module",
    "to_onnx",
    "to_torch",
]


def __getattr__(name: str) -> Any:
    """Import the torch-side names on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ranp_onnx' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
