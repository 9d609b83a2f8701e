"""ranp-onnx: Resource Aware Neuron Pruning (RANP) at initialization for 3D CNNs, on ONNX.

The pipeline, one module per stage: :mod:`~ranp_onnx.load` -> :mod:`~ranp_onnx.analyse`
-> :mod:`~ranp_onnx.costs` -> :mod:`~ranp_onnx.report`. Op knowledge lives in
:mod:`ranp_onnx.ops`, one rule per op family.

The torch side is imported on first use, so ``import ranp_onnx`` does not import torch:
:func:`to_torch` / :func:`to_onnx` (:mod:`~ranp_onnx.round_trip`) and
:func:`prune_module` (:mod:`~ranp_onnx.prune_torch`); :func:`regularize`,
:func:`regularize_module` and :class:`Regularizer` (:mod:`ranp_onnx.regularization`,
Zhang et al.'s regularization-based pruning of trained networks).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .analyse import GraphAnalysis, analyse, parse_input_shapes
from .costs import CostReport, count_costs
from .errors import RanpError
from .load import LoadedModel, load_model

# ``prune`` is also the name of its module: importing the function eagerly is the only way
# ``ranp_onnx.prune`` stays the function once someone imports ``ranp_onnx.prune.X``.
from .prune import PruneOptions, PruneResult, apply_plan, prune

if TYPE_CHECKING:
    from .prune_torch import PrunedModule, prune_module
    from .regularization.options import RegularizeOptions
    from .regularization.pipeline import regularize, regularize_module
    from .regularization.regularizer import Regularizer
    from .round_trip import to_onnx, to_torch

#: Public names imported on first access (they import torch), and their modules.
_LAZY = {
    "PrunedModule": "prune_torch",
    "prune_module": "prune_torch",
    "RegularizeOptions": "regularization.options",
    "Regularizer": "regularization.regularizer",
    "regularize": "regularization.pipeline",
    "regularize_module": "regularization.pipeline",
    "to_onnx": "round_trip",
    "to_torch": "round_trip",
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
